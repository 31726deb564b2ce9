"""The API's documentation pages load on a network with no internet: every asset they
reference is served by the API itself, and headless Chromium with every other host
unreachable renders the operations list."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from support import running

from sensornet.settings import Settings
from wiring.parts import run_api

REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")
ANY_URL = re.compile(r"https?://[^\s\"'<>)]+")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


async def test_docs_pages_reference_only_their_own_assets(settings: Settings) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    async with running(run_api, settings), httpx.AsyncClient(base_url=base) as http:
        for page in ("/docs", "/redoc"):
            answer = await http.get(page)
            assert answer.status_code == 200
            html = answer.text
            # no absolute URL at all in the page (a CDN, Google Fonts, a validator)
            assert ANY_URL.findall(html) == [], (page, ANY_URL.findall(html))
            found = references(html)
            assert found, page
            for ref in [*found, "/openapi.json"]:
                url = urljoin(base + page, ref)
                assert urlsplit(url).netloc == urlsplit(base).netloc, ref
                asset = await http.get(url)
                assert asset.status_code == 200, (ref, asset.status_code)
                assert asset.content, ref


# `make test` installs Chromium (scripts/bootstrap.sh --test); only a bare `pytest` on a
# machine without it skips, and never under CI, where a missing browser is a failure.
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed here"
)
async def test_swagger_ui_renders_with_the_internet_unreachable(
    settings: Settings, tmp_path: Path
) -> None:
    base = f"http://{settings.api_host}:{settings.api_port}"
    assert CHROMIUM is not None
    async with running(run_api, settings):
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            # every host but the API's is unreachable, as on an offline network
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000", "--dump-dom", f"{base}/docs",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(90):
            dom, _ = await proc.communicate()
    rendered = dom.decode()
    assert "swagger-ui" in rendered
    assert "/sensors/{sensor_id}/latest" in rendered  # the operations list was built
