"""Browser-test fixtures: the built book on 127.0.0.1 and Debian's Chromium driven by Playwright.

The page asks jsdelivr for MathJax, RequireJS and the widget manager. No network is assumed:
those requests are answered from this folder's npm packages (the same files jsdelivr serves),
and every other outside request is blocked and recorded, so a test can fail on it.
"""

from __future__ import annotations

import json
import mimetypes
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
NODE_MODULES = Path(__file__).parent / "node_modules"
CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/(?P<name>(@[^/@]+/)?[^/@]+)@(?P<version>[^/]+)/(?P<path>[^?#]+)")
# The widget bundle asks for its icon fonts relative to the page, where they do not exist (a known
# limitation of the static widget manager; COURSE.md section 7). Nothing else may fail.
KNOWN_ICON_FONT_404 = re.compile(r"/@jupyter-widgets/html-manager/dist/[0-9a-f]{20}\.(woff2?|ttf|eot|svg)$")
CHROMIUM_FLAGS = [  # a closed network: no background connections, no sandbox as root, no GPU
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site() -> str:
    if not (HTML / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make book` first")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser() -> Browser:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.skip("no chromium on PATH")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def serve_from_npm(route: Route, blocked: list[str]) -> None:
    """Answer a jsdelivr npm URL from node_modules, after checking the pinned version."""
    match = CDN.match(route.request.url)
    if not match:
        blocked.append(route.request.url)
        route.abort()
        return
    package = NODE_MODULES / match["name"]
    installed = json.loads((package / "package.json").read_text())["version"]
    if installed != match["version"]:
        blocked.append(f"{route.request.url} (installed {match['name']}@{installed})")
        route.abort()
        return
    file = package / match["path"]
    if not file.is_file():
        route.fulfill(status=404, body="not in the npm package")
        return
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    route.fulfill(status=200, body=file.read_bytes(), headers={"Content-Type": content_type, "Access-Control-Allow-Origin": "*"})


@dataclass
class PageLog:
    """What went wrong while a page was open, less the known icon-font 404s."""

    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    failed: list[str] = field(default_factory=list)  # requests that failed or returned >= 400
    blocked: list[str] = field(default_factory=list)  # outside requests not served locally

    def console(self, kind: str, text: str, url: str) -> None:
        if kind == "error" and not KNOWN_ICON_FONT_404.search(url):
            self.errors.append(f"{text} [{url}]")

    def request_failed(self, url: str, why: object) -> None:
        if not KNOWN_ICON_FONT_404.search(url):
            self.failed.append(f"{url} ({why})")

    def problems(self) -> list[str]:
        return self.errors + self.failed + self.blocked


@pytest.fixture
def page(browser: Browser, site: str) -> tuple[Page, PageLog]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    log = PageLog()
    context.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: serve_from_npm(route, log.blocked))
    page = context.new_page()
    page.on("console", lambda msg: log.console(msg.type, msg.text, msg.location.get("url", "")))
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    page.on("requestfailed", lambda request: log.request_failed(request.url, request.failure))
    page.on("response", lambda response: log.request_failed(response.url, response.status) if response.status >= 400 else None)
    yield page, log
    context.close()
