"""Headless Debian Chromium driven over the DevTools protocol (a WebSocket), for tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    # Host candidates as plain addresses: resolving mDNS names would leave loopback.
    "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,MediaRouter,OptimizationHints",
    # Nothing but 127.0.0.1 resolves, so the browser cannot reach out anywhere.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def available() -> bool:
    return shutil.which(CHROMIUM) is not None


class Browser:
    """One Chromium process with one page."""

    def __init__(self, proc: asyncio.subprocess.Process, ws: ClientConnection) -> None:
        self._proc = proc
        self._ws = ws
        self._ids = itertools.count(1)

    @classmethod
    async def launch(cls, url: str, profile: Path) -> Browser:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            url,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = await _devtools_port(profile / "DevToolsActivePort", proc)
            ws_url = await _page_websocket(port)
            ws = await connect(ws_url, max_size=None)
        except BaseException:
            proc.kill()
            await proc.wait()
            raise
        return cls(proc, ws)

    async def evaluate(self, expression: str, timeout_s: float = 20.0) -> Any:
        """The JSON value of `expression` (promises are awaited)."""
        msg_id = next(self._ids)
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        await self._ws.send(
            json.dumps({"id": msg_id, "method": "Runtime.evaluate", "params": params})
        )
        async with asyncio.timeout(timeout_s):
            while True:
                message = json.loads(await self._ws.recv())
                if message.get("id") == msg_id:
                    break
        result = message.get("result", {})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, within_s: float = 20.0) -> Any:
        """Polls a page expression until it is truthy; returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self._ws.close()
        self._proc.terminate()
        try:
            await asyncio.wait_for(self._proc.wait(), timeout=10)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


def _read_port(path: Path) -> int | None:
    if not path.exists():
        return None
    first = path.read_text().splitlines()[:1]
    return int(first[0]) if first and first[0].isdigit() else None


async def _devtools_port(path: Path, proc: asyncio.subprocess.Process) -> int:
    # Chromium picks a free port for --remote-debugging-port=0 and writes it here.
    for _ in range(300):
        if proc.returncode is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}")
        port = _read_port(path)
        if port is not None:
            return port
        await asyncio.sleep(0.05)
    raise RuntimeError("chromium did not open its DevTools port")


async def _page_websocket(port: int) -> str:
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            await asyncio.sleep(0.05)
    raise RuntimeError("chromium shows no page")
