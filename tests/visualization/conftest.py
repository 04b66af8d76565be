"""Browser fixtures for the visualization tests: headless Chromium, offline.

``chromium_page`` (function scope) is a fresh page of the system Chromium (Debian's ``chromium``,
driven by playwright-python through ``executable_path`` — never a browser that playwright downloads)
on which every request that is not ``file://`` or ``data:`` is blocked, so a page that needs the
network shows it: its script fails, or ``blocked`` lists the URL. It has:

- ``open(path, wait_for=None)``: load a local file (``wait_for``: a JavaScript expression to wait on);
- ``page``: the playwright ``Page`` (hover, click, evaluate, ...);
- ``errors``: console errors and uncaught page errors so far; ``blocked``: URLs that were refused;
- ``screenshot(name)``: a full-page PNG under the test's ``tmp_path``, returned as a Path.

Where playwright or Chromium is missing the test is skipped, with the reason, which ``pytest -rs``
prints (``make test`` installs Chromium with apt where it runs as root).

    def test_my_page(chromium_page, tmp_path):
        chromium_page.open(tmp_path / "page.html", wait_for="document.querySelector('svg')")
        assert chromium_page.errors == [] and chromium_page.blocked == []
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_SCHEMES = ("file://", "data:")


def chromium_binary() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class OfflinePage:
    page: Any
    directory: Path
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def open(self, path: Path, wait_for: Optional[str] = None, timeout_ms: int = 60_000) -> None:
        self.page.goto(Path(path).resolve().as_uri())
        if wait_for:
            self.page.wait_for_function(wait_for, timeout=timeout_ms)

    def screenshot(self, name: str = "page.png", full_page: bool = True) -> Path:
        path = self.directory / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture(scope="module")
def chromium_browser():
    """One headless Chromium per test module (closed after it, so no event loop outlives the module)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright): browser tests skipped")
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no system Chromium (Debian: apt-get install chromium; `make test` does it as root): browser tests skipped")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def chromium_page(chromium_browser, tmp_path) -> OfflinePage:
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    offline = OfflinePage(page, tmp_path)
    page.on("console", lambda m: offline.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: offline.errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(LOCAL_SCHEMES):
            r.continue_()
        else:
            offline.blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    try:
        yield offline
    finally:
        context.close()
