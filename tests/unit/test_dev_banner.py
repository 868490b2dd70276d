"""What `sluice dev` suggests trying first answers, on the API it starts."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import fakeredis
import pytest

from sluice.cli.devserver import DEV_ENV, dev_banner
from sluice.config import Settings
from tests.unit.fake_api import api_client

PUBLIC_URL = "http://127.0.0.1:8080"


def test_the_banners_curl_answers_200(monkeypatch: pytest.MonkeyPatch) -> None:
    (line,) = [line for line in dev_banner(PUBLIC_URL).splitlines() if "try:" in line]
    argv = shlex.split(line.split("try:", 1)[1])
    assert argv[:2] == ["curl", "-H"] and len(argv) == 4, argv
    name, value = argv[2].split(": ", 1)
    url = urlsplit(argv[3])
    assert f"{url.scheme}://{url.netloc}" == PUBLIC_URL
    for key, setting in DEV_ENV.items():  # what `sluice dev` sets for its processes
        monkeypatch.setenv(key, setting)
    monkeypatch.delenv("SLUICE_APPS", raising=False)
    settings = Settings(public_url=PUBLIC_URL)
    with api_client(settings, fakeredis.FakeServer(), monkeypatch) as client:
        resp = client.get(url.path, params=url.query or None, headers={name: value})
    assert resp.status_code == 200, resp.text
    assert resp.json()["appId"] == "demo"
