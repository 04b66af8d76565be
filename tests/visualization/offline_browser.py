"""Headless Chromium for the visualization tests: the system binary (never a downloaded browser),
every request that is not a local file blocked, console errors collected. Skips, saying why, where
Chromium or playwright is missing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_or_skip():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no system Chromium (apt-get install chromium): browser checks skipped")
    return playwright, binary


def open_offline(path: Path, screenshot: Path, wait_for: str = "true", evaluate: str = "() => null",
                 width: int = 1100) -> tuple[Any, list[str], list[str]]:
    """Open ``path`` from file:// with the network blocked; wait until the JavaScript expression
    ``wait_for`` holds; return (``evaluate``'s result, console errors, blocked request URLs) and save
    a full-page screenshot."""
    playwright, binary = chromium_or_skip()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 800})
            errors: list[str] = []
            blocked: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    blocked.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_function(wait_for, timeout=30_000)
            result = page.evaluate(evaluate)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return result, errors, blocked
