"""`/docs` and `/redoc` render in headless Chromium that cannot reach past 127.0.0.1:
the pages work on a self-hosted Sluice without internet, and Swagger UI offers Authorize.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sluice.cli.devserver import answers_healthz
from tests.conftest import free_port
from tests.integration.helpers import spawn, stack_env, wait_until
from tests.sfu import browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not browser.available(), reason="/usr/bin/chromium is not installed"),
]

OPERATIONS = 11  # every route in /openapi.json


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`sluice api` alone: the docs pages need neither Redis nor the SFU."""
    logs = tmp_path_factory.mktemp("docs")
    port = free_port()
    env = stack_env(f"redis://127.0.0.1:{free_port()}/0")
    api = spawn("api", port, env, logs / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers_healthz(url), 20, "the API")
        yield url
    finally:
        api.terminate()
        api.wait(timeout=10)


@pytest.fixture
async def page(api_url: str, tmp_path: Path) -> AsyncIterator[browser.Browser]:
    b = await browser.Browser.launch("about:blank", tmp_path / "profile")
    try:
        yield b
    finally:
        await b.close()


async def test_swagger_ui_renders_offline_with_authorize(
    api_url: str, page: browser.Browser
) -> None:
    await page.evaluate(f"window.location.href = {f'{api_url}/docs'!r}; true")
    await page.wait_for(f"document.querySelectorAll('.opblock').length === {OPERATIONS}")
    assert await page.evaluate("!!document.querySelector('button.authorize')")
    # The dialog offers the bearer scheme declared in the schema.
    await page.evaluate("document.querySelector('button.authorize').click(); true")
    await page.wait_for("!!document.querySelector('.auth-container input')")
    assert "HTTPBearer" in await page.evaluate(
        "document.querySelector('.auth-container').textContent"
    )


async def test_redoc_renders_offline(api_url: str, page: browser.Browser) -> None:
    await page.evaluate(f"window.location.href = {f'{api_url}/redoc'!r}; true")
    await page.wait_for("!!document.querySelector('[data-section-id]')")
    text = await page.evaluate("document.body.textContent")
    assert "Create WebSocket adapters" in text
    assert "Push and/or pull tracks" in text
