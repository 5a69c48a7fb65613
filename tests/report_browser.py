"""Open an HTML file in headless Chromium (Debian's package, driven by Playwright over CDP) with no
network: every request the page makes, its console errors, a screenshot and what rendered."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    env = os.environ.get("SERVE_BENCH_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class PageCheck:
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    plots: int = 0
    svgs: int = 0
    tables: int = 0
    screenshot: Path | None = None


def open_offline(html: Path, screenshot: Path, executable: str) -> PageCheck:
    from playwright.sync_api import sync_playwright

    url = html.resolve().as_uri()
    check = PageCheck(screenshot=screenshot)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.on("request", lambda r: check.requests.append(r.url))
            page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: check.console_errors.append(f"page error: {e}"))
            page.goto(url, wait_until="load")
            page.wait_for_selector(".plot-container", timeout=30_000)
            page.wait_for_timeout(500)
            check.plots = page.locator(".plot-container").count()
            check.svgs = page.locator("svg.main-svg").count()
            check.tables = page.locator("table.data").count()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return check
