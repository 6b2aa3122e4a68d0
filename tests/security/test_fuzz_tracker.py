"""Hypothesis over every tracker route (/c/, /v/, /b/, /a/, /postback GET and POST form and JSON, /aff_lsr):
arbitrary paths, query strings, headers and bodies, near-valid ones included (a real link, a real offer,
valid click ids and signatures). Never a 5xx, and a refused request (4xx, or TUNE's success=false) writes
nothing to any stream or the spool.

The tracker runs on the session's real Valkey and PostgreSQL, on an event loop of its own thread, so
hypothesis drives it from plain synchronous tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.settings import Settings
from kernel.signature import sign
from tests.conftest import TEST_SECRET, Servers
from tests.factories import Programme, programme
from tests.http.tracker_client import Tracker, running
from tracker.app import signer_for

pytestmark = pytest.mark.timeout(120)
T = TypeVar("T")
EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@dataclass
class Target:
    """A tracker on its own loop, and what near-valid requests need: a link, offers, secrets, click ids."""

    loop: asyncio.AbstractEventLoop
    tracker: Tracker
    hmac: Programme
    token: Programme
    hmac_secret: str
    token_secret: str

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def click_id(self, fresh: bool = True) -> str:
        return signer_for(TEST_SECRET).issue(self.hmac.link_id, int(time.time()) - (0 if fresh else 10**7))


@pytest.fixture(scope="module")
def target(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    core = Settings(
        mode="development",
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        data_dir=Path(tmp_path_factory.mktemp("fuzz")),
        secret_key=TEST_SECRET,
        host="127.0.0.1",
        tracker_port=0,
        portal_port=0,
        tracker_workers=1,
        shards=2,
        key_prefix=servers.prefix,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-tracker", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    async def setup() -> tuple[Programme, Programme, str, str]:
        conn = await asyncpg.connect(servers.database_url)
        try:
            hmac = await programme(conn, caps={"clicks": {"daily": 1_000_000}})
            token = await programme(conn)
            await conn.execute("UPDATE offers SET postback_security = 'token' WHERE id = $1", token.offer_id)
            secrets = await conn.fetch(
                "SELECT id, postback_secret FROM offers WHERE id = ANY($1::bigint[])", [hmac.offer_id, token.offer_id]
            )
        finally:
            await conn.close()
        by_id = {r["id"]: r["postback_secret"] for r in secrets}
        return hmac, token, by_id[hmac.offer_id], by_id[token.offer_id]

    try:
        hmac, token, hmac_secret, token_secret = run(setup())
        tracker = run(stack.enter_async_context(running(core)))
        yield Target(loop, tracker, hmac, token, hmac_secret, token_secret)
    finally:
        with contextlib.suppress(Exception):
            run(stack.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --- strategies -------------------------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)
KEYS = st.sampled_from(
    [
        "sub1", "sub2", "sub3", "sub4", "sub5", "source", "url", "click_id", "cid", "offer_id", "order_id",
        "amount", "currency", "action", "status", "type", "items", "token", "transaction_id", "adv_sub",
        "security_token", "goal_name", "",
    ]
)  # fmt: skip
HEADER_NAMES = st.sampled_from(
    [
        "user-agent", "cookie", "x-forwarded-for", "x-forwarded-proto", "purpose", "sec-purpose", "x-purpose",
        "x-moz", "if-none-match", "content-type", "x-clickmint-timestamp", "x-clickmint-signature",
        "x-clickmint-token", "referer", "accept-language", "host", "content-encoding",
    ]
)  # fmt: skip
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | TEXT, inner, max_size=6),
    max_leaves=12,
)


@st.composite
def query(draw: st.DrawFn, target: Target) -> str:
    """A raw query string: well-formed pairs, real values, or percent-encoded garbage (invalid UTF-8 too)."""
    pairs = draw(
        st.lists(
            st.tuples(
                KEYS | TEXT,
                TEXT
                | st.sampled_from(
                    [
                        target.click_id(),
                        target.click_id(fresh=False),
                        str(target.hmac.offer_id),
                        str(target.token.offer_id),
                        target.token_secret,
                        "https://shop.example.com/x?cid={click_id}",
                        "https://evil.example/",
                        "//evil.example",
                        "-1",
                        "1e309",
                        "99999999999999999999999",
                    ]
                ),
            ),
            max_size=8,
        )
    )
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    garbage = draw(st.binary(max_size=20))
    return encoded + ("&" + "".join(f"%{b:02x}" for b in garbage) if garbage else "")


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    pairs = draw(st.lists(st.tuples(HEADER_NAMES, LATIN1), max_size=6))
    return [(name.encode(), value.encode("latin-1")) for name, value in pairs]


def segment(target: Target) -> st.SearchStrategy[str]:
    return st.sampled_from([target.hmac.code, target.token.code, str(target.hmac.offer_id), ""]) | TEXT


# --- the check --------------------------------------------------------------------------------------------


async def _written(t: Tracker) -> tuple[int, int, int, int]:
    total, redis, spooled = await t.written()
    return total, redis, spooled, t.app.recorder.spool.depth()


async def _exchange(
    t: Tracker, method: str, path: str, raw_query: str, head: list[tuple[bytes, bytes]], body: bytes
) -> tuple[httpx.Response, tuple[int, ...], tuple[int, ...]]:
    before = await _written(t)
    url = httpx.URL("http://track.test" + quote(path, safe="/%")).copy_with(query=raw_query.encode("ascii"))
    request = t.http.build_request(method, url, headers=head, content=body if method == "POST" else None)
    # Straight to the app: the client would try to follow a redirect built from a fuzzed Host header.
    transport = httpx.ASGITransport(app=t.app, client=("203.0.113.77", 5000))
    response = await transport.handle_async_request(request)
    await response.aread()
    return response, before, await _written(t)


def check(target: Target, method: str, path: str, raw_query: str, head: list[tuple[bytes, bytes]], body: bytes) -> None:
    response, before, after = target.run(_exchange(target.tracker, method, path, raw_query, head, body))
    assert response.status_code < 500, (method, path, raw_query, head, body, response.text)
    refused = 400 <= response.status_code < 500 or response.text.startswith("success=false")
    if refused:
        assert after == before, f"a refusal wrote events: {response.status_code} {response.text}"


# --- one test per route -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/c/", "/v/", "/b/", "/a/"])
def test_hot_routes(target: Target, prefix: str) -> None:
    @FUZZ
    @given(
        method=st.sampled_from(["GET", "HEAD"]),
        code=segment(target),
        tail=st.sampled_from(["", "/", "/x", "%00", "%2F..%2F", "?"]),
        raw_query=query(target),
        head=headers(),
    )
    def run(method: str, code: str, tail: str, raw_query: str, head: list[tuple[bytes, bytes]]) -> None:
        check(target, method, prefix + code + tail, raw_query, head, b"")

    run()


@st.composite
def postback_body(draw: st.DrawFn, target: Target) -> tuple[bytes, str]:
    """(body, content type): JSON near the contract or not JSON at all, a form, or raw bytes."""
    kind = draw(st.sampled_from(["json", "form", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200)), draw(LATIN1)
    fields = draw(st.dictionaries(KEYS, JSONISH, max_size=8))
    if draw(st.booleans()):
        fields = {
            "offer_id": target.hmac.offer_id,
            "click_id": draw(st.sampled_from([target.click_id(), target.click_id(fresh=False), "x"])),
            "order_id": draw(TEXT),
            **fields,
        }
    if kind == "json":
        return orjson.dumps(fields, option=orjson.OPT_NON_STR_KEYS), "application/json"
    form = "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in fields.items())
    return form.encode(), "application/x-www-form-urlencoded"


def test_postback(target: Target) -> None:
    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST"]),
        payload=postback_body(target),
        raw_query=query(target),
        head=headers(),
        signed=st.sampled_from(["no", "valid", "stale", "other-secret"]),
        tail=st.sampled_from(["", "/", "/x"]),
    )
    def run(
        method: str,
        payload: tuple[bytes, str],
        raw_query: str,
        head: list[tuple[bytes, bytes]],
        signed: str,
        tail: str,
    ) -> None:
        body, content_type = payload if method == "POST" else (b"", "")
        head = [(b"content-type", content_type.encode("latin-1", "replace")), *head] if content_type else head
        if signed != "no":
            ts = int(time.time()) - (3600 if signed == "stale" else 0)
            secret = target.hmac_secret if signed != "other-secret" else "another" * 8
            signature = sign(secret, ts, body if method == "POST" else raw_query.encode())
            head = [*head, (b"x-clickmint-timestamp", str(ts).encode()), (b"x-clickmint-signature", signature.encode())]
        check(target, method, "/postback" + tail, raw_query, head, body)

    run()


def test_aff_lsr(target: Target) -> None:
    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST"]),
        payload=postback_body(target),
        raw_query=query(target),
        head=headers(),
    )
    def run(method: str, payload: tuple[bytes, str], raw_query: str, head: list[tuple[bytes, bytes]]) -> None:
        body, content_type = payload if method == "POST" else (b"", "")
        head = [(b"content-type", content_type.encode("latin-1", "replace")), *head] if content_type else head
        check(target, method, "/aff_lsr", raw_query, head, body)

    run()
