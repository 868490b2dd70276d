"""wss:// endpoints: certificates are verified, against a configured CA bundle if any."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.integration.helpers import ingest_item, start_stack

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system trust store knows."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@asynccontextmanager
async def wss_endpoint(cert: Path, key: Path) -> AsyncIterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def hold(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with serve(hold, "127.0.0.1", 0, ssl=context) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"wss://127.0.0.1:{port}/tts?token=s3cret"


async def test_wss_certificates_are_verified(clean_redis: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with wss_endpoint(cert, key) as url:
        for bundle, expected in (("", "websocket_handshake_failed"), (str(cert), None)):
            logs = tmp_path / ("with-bundle" if bundle else "system-store")
            logs.mkdir()
            stack = start_stack(clean_redis, 1, logs, endpoint_ca_bundle=bundle)
            try:
                async with stack.client() as client:
                    resp = await client.post(
                        "/adapters/websocket/new", json={"tracks": [ingest_item(url)]}
                    )
                track = resp.json()["tracks"][0]
                assert track.get("errorCode") == expected, resp.text
                if expected:
                    assert "certificate" in track["errorDescription"].lower()
            finally:
                stack.stop()
