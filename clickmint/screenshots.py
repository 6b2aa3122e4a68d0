"""Screenshots of every portal page, as partners and programme managers see them: `python -m clickmint.screenshots`.

It needs nothing running: it starts its own throwaway Valkey and PostgreSQL (the embedded ones `clickmint up`
uses), seeds the showcase programme (portal/showcase.py), serves the portal on a free loopback port and
photographs each page with the system's Chromium (Playwright drives it; `pip install -e '.[test]'` and
`apt-get install chromium`), at desktop width and at 390 px, full page. Everything it started is stopped
and its data removed when it ends."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

WIDTHS = {"desktop": 1280, "phone": 390}
DEFAULT_OUT = Path("screenshots")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clickmint.screenshots",
        description="Write a PNG of every portal page (partner, programme manager, sign-in, invitation, loyalty "
        "member) at desktop width and at 390 px, from a throwaway showcase programme. Needs Chromium "
        "(apt-get install chromium; or CLICKMINT_CHROMIUM=/path/to/chrome) and Playwright (pip install -e '.[test]').",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="directory for the PNG files (default: %(default)s)"
    )
    parser.add_argument(
        "--only", choices=("public", "partner", "operator"), action="append", help="only these pages (repeatable)"
    )
    return parser


def file_name(role: str, path: str, size: str) -> str:
    """/statements/3 as a partner at 390 px -> partner-statements-3-phone.png"""
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"
    return f"{role}-{slug}-{size}.png"


@contextlib.asynccontextmanager
async def _servers(base: Path) -> AsyncIterator[tuple[str, str]]:
    from clickmint.embedded import EmbeddedPostgres, EmbeddedValkey
    from clickmint.migrate import migrate

    os.chmod(base, 0o755)  # PostgreSQL runs unprivileged when started as root: it must reach its data
    valkey, postgres = EmbeddedValkey(base, port=0), EmbeddedPostgres(base, port=0)
    redis_url = valkey.start()
    try:
        database_url = postgres.start()
        try:
            await migrate(database_url)
            yield redis_url, database_url
        finally:
            postgres.stop()
    finally:
        valkey.stop()


async def run(out: Path, only: list[str] | None) -> list[Path]:
    import asyncpg
    import uvicorn
    from playwright.async_api import async_playwright

    from clickmint.embedded import pick_port
    from kernel.env import Env
    from kernel.settings import Settings
    from portal import showcase
    from portal.app import build
    from portal.settings import PortalSettings

    chromium = os.environ.get("CLICKMINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed: apt-get install chromium, or set CLICKMINT_CHROMIUM")
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    base = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="clickmint-screenshots-"))
    written: list[Path] = []
    try:
        async with _servers(base) as (redis_url, database_url):
            conn = await asyncpg.connect(database_url)
            secret_key = secrets.token_urlsafe(48)
            try:
                ids = await showcase.seed(conn, secret_key=secret_key)
            finally:
                await conn.close()
            port = pick_port(0)
            core = Settings(
                mode="development",
                redis_url=redis_url,
                database_url=database_url,
                data_dir=base,
                secret_key=secret_key,
                host="127.0.0.1",
                tracker_port=0,
                portal_port=port,
                tracker_workers=1,
                shards=1,
                key_prefix="cmshots",
            )
            env = Env({"CLICKMINT_DELIVER_POSTBACKS": "false", "CLICKMINT_TRACKER_PUBLIC_URL": "https://t.example"})
            app = build(PortalSettings.from_env(env, core=core))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
                    for role in only or ["public", "partner", "operator"]:
                        written += await _photograph(browser, f"http://127.0.0.1:{port}", role, ids, out, showcase)
                    await browser.close()
            finally:
                server.should_exit = True
                await task
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return written


async def _photograph(browser: Any, base: str, role: str, ids: dict[str, Any], out: Path, showcase: Any) -> list[Path]:
    page = await (await browser.new_context()).new_page()
    if role != "public":
        await page.goto(base + ("/m/sunny-shop" if role == "partner" else "/login"))
        await page.fill("input[name=email]", showcase.PARTNER_EMAIL if role == "partner" else showcase.OPERATOR_EMAIL)
        await page.fill("input[name=password]", showcase.PASSWORD)
        await page.click("main button[type=submit]")
        await page.wait_for_load_state()
    written = []
    for name, path in showcase.named_pages(role, ids):
        for size, width in WIDTHS.items():
            await page.set_viewport_size({"width": width, "height": 900})
            await page.goto(base + path)
            target = out / file_name(role, name, size)
            await page.screenshot(path=str(target), full_page=True)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    written = asyncio.run(run(args.out, args.only))
    for path in written:
        print(path)
    print(f"{len(written)} screenshots in {args.out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
