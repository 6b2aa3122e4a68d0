"""A throwaway CA and a server certificate it signed (made with the openssl command), and a TLS Target."""

from __future__ import annotations

import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from tests.security.live import Target


def certificate(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key) for the DNS name `name`."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=clickmint egress test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={name}")
    (directory / "san.cnf").write_text(f"subjectAltName=DNS:{name}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@contextlib.asynccontextmanager
async def tls_target(cert: Path, key: Path, tls: bool) -> AsyncIterator[Target]:
    """A Target speaking TLS with `cert` (or plain HTTP when `tls` is false)."""
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    async with Target(tls=context) as target:
        yield target
