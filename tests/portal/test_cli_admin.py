"""`clickmint admin`: the operator's operations from the command line, validated like the API and audited."""

from __future__ import annotations

import orjson

from tests.helpers import cli_env, run_cli
from tests.portal.kit import login, portal_client


async def _cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    return await run_cli(env, "admin", *args, stdin=stdin)


async def test_a_programme_set_up_from_the_command_line(servers, settings, db):
    env = cli_env(settings)
    code, out, err = await _cli(
        env,
        "merchant",
        "add",
        "--slug",
        "cli-shop",
        "--name",
        "CLI Shop",
        "--address",
        "1 Market Street\\nSpringfield",
        "--payment-terms",
        "Net 30",
    )
    assert code == 0, err
    made = orjson.loads(out)
    assert (made["slug"], made["payment_terms"]) == ("cli-shop", "Net 30")
    assert made["address"] == "1 Market Street\nSpringfield"  # printed on its statements
    code, out, err = await _cli(
        env,
        "offer",
        "add",
        "--merchant",
        "cli-shop",
        "--name",
        "Ten percent",
        "--destination",
        "https://cli.example/?c={click_id}",
        "--plan",
        '{"cps_percent": "10"}',
        "--hosts",
        "cli.example",
    )
    assert code == 0, err
    offer = orjson.loads(out)
    code, out, err = await _cli(
        env, "offer", "add", "--merchant", "cli-shop", "--name", "Bad", "--destination", "javascript:alert(1)"
    )
    assert code == 1 and "invalid_field" in err
    code, out, err = await _cli(
        env, "partner", "add", "--merchant", "cli-shop", "--name", "Dana", "--email", "dana@p.example"
    )
    assert code == 0, err
    partner = orjson.loads(out)
    code, out, err = await _cli(env, "link", "add", "--offer", str(offer["id"]), "--partner", str(partner["id"]))
    assert code == 0 and orjson.loads(out)["code"]
    code, out, err = await _cli(
        env,
        "user",
        "add",
        "--email",
        "ops@cli.example",
        "--role",
        "operator",
        "--merchant",
        "cli-shop",
        "--password-stdin",
        stdin=b"a long enough password\n",
    )
    assert code == 0, err
    code, out, err = await _cli(env, "key", "add", "--email", "dana@p.example", "--name", "reports")
    key = orjson.loads(out)["key"]
    code, out, err = await _cli(env, "user", "reset", "dana@p.example")
    assert "/reset?token=" in orjson.loads(out)["reset_url"]
    code, out, err = await _cli(env, "partner", "status", str(partner["id"]), "suspended", "--merchant", "cli-shop")
    assert code == 0 and orjson.loads(out)["status"] == "suspended"
    code, out, err = await _cli(env, "audit", "--limit", "20")
    actions = [(e["action"], e["object_type"]) for e in orjson.loads(out)]
    assert ("create", "offer") in actions and ("set_status", "partner") in actions
    assert all(e["actor_email"].startswith("cli:") for e in orjson.loads(out))
    async with portal_client(settings) as client:
        await login(client, "ops@cli.example", "a long enough password")
        offers = (await client.get("/api/v1/admin/offers")).json()["offers"]
        assert [o["name"] for o in offers] == ["Ten percent"]
        me = (await client.get("/api/v1/me", headers={"authorization": f"Bearer {key}"})).json()
        assert me["email"] == "dana@p.example" and me["scopes"] == ["read"]
    assert await db.fetchval("SELECT count(*) FROM offers") == 1


async def test_a_merchants_default_language_from_the_command_line(servers, settings, db):
    """`merchant add/edit --default-locale`: one of the five codes, else refused with nothing written."""
    env = cli_env(settings)
    code, out, err = await _cli(env, "merchant", "add", "--slug", "sklep", "--name", "Sklep", "--default-locale", "it")
    assert code == 1 and "invalid_field" in err and "default_locale" in err
    assert await db.fetchval("SELECT count(*) FROM merchants WHERE slug = 'sklep'") == 0
    code, out, err = await _cli(env, "merchant", "add", "--slug", "sklep", "--name", "Sklep", "--default-locale", "pl")
    assert code == 0, err
    assert orjson.loads(out)["default_locale"] == "pl"
    code, out, err = await _cli(env, "merchant", "edit", "sklep", "--default-locale", "PL")
    assert code == 1 and "invalid_field" in err
    assert await db.fetchval("SELECT default_locale FROM merchants WHERE slug = 'sklep'") == "pl"
    code, out, err = await _cli(env, "merchant", "edit", "sklep", "--default-locale", "de", "--payment-terms", "Net 14")
    assert code == 0, err
    assert (orjson.loads(out)["default_locale"], orjson.loads(out)["payment_terms"]) == ("de", "Net 14")
    code, out, err = await _cli(env, "merchant", "edit", "nowhere", "--default-locale", "de")
    assert code == 1 and "not_found" in err
    code, out, err = await _cli(env, "merchant", "add", "--slug", "plain", "--name", "Plain")
    assert code == 0 and orjson.loads(out)["default_locale"] == "en"
