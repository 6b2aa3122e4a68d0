"""rediss:// end to end: the tracker records a click and ingest stores it through a real TLS connection.

Managed Redis services (and Valkey built with TLS) speak TLS. The bundled Valkey is built without it,
so a TLS terminator runs in front of the test Valkey here, as a load balancer would: a certificate
signed by a throwaway CA (made with the openssl command), every byte forwarded as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from kernel.redis.resp import RedisUnavailable, RespConnection, pack
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import drain, tracker_client

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signed: (ca.crt, server.crt, server.key)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=clickmint test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
        "/CN=127.0.0.1")  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@contextlib.asynccontextmanager
async def _tls_front(redis_url: str, cert: Path, key: Path) -> AsyncIterator[int]:
    """A TLS listener on loopback forwarding to the plain Redis behind it; yields its port."""
    target = urlsplit(redis_url)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(target.hostname, target.port or 6379)
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_click_travels_over_tls(settings: Settings, db: asyncpg.Connection, tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    prog = await programme(db)
    async with _tls_front(settings.redis_url or "", cert, key) as port:
        db_part = urlsplit(settings.redis_url or "").path
        tls = dataclasses.replace(settings, redis_url=f"rediss://127.0.0.1:{port}{db_part}?ssl_ca_certs={ca}")

        conn = RespConnection(tls.redis_url or "")
        await conn.connect()
        assert await conn.execute([pack("PING")]) == [b"PONG"]
        await conn.close()

        async with tracker_client(tls) as (_app, client):
            response = await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"})
            assert response.status_code == 302
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
        await drain(tls, 1, db)  # ingest reads and acknowledges over TLS too
    stored = await db.fetchrow("SELECT type, link_id FROM events")
    assert (stored["type"], stored["link_id"]) == ("click", prog.link_id)
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_an_untrusted_certificate_is_refused(settings: Settings, tmp_path: Path) -> None:
    _ca, cert, key = _certificates(tmp_path)
    async with _tls_front(settings.redis_url or "", cert, key) as port:
        conn = RespConnection(f"rediss://127.0.0.1:{port}/0")  # the system's CAs: they never signed it
        with pytest.raises(RedisUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await conn.connect()


def test_unknown_url_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"redis://, rediss:// \(TLS\) or unix://, not valkey://"):
        RespConnection("valkey://127.0.0.1:6379/0")
