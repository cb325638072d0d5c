"""Browser-test fixtures: the built book on 127.0.0.1 and Debian's Chromium driven by Playwright.

The book serves its own MathJax, RequireJS and widget manager from _static/vendor, so the
browser needs no network: every request that leaves 127.0.0.1 (or file://) is blocked and
recorded, and a test fails on it.

A test that leaves a page says so first (`PageLog.leave`): the requests of that page which the
browser then aborts (a favicon or a font still on its way) were cancelled by the test, not by a
fault of the page. Every other failed request, every response >= 400, and every error of the
local server is a problem.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import traceback
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page, Request, Route, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
OUTSIDE = re.compile(r"^(?!http://127\.0\.0\.1[:/]|file://|data:|blob:)")
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


# A browser that stops reading (it left the page, or a cached copy sufficed) closes the socket.
CLIENT_WENT_AWAY = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    """A static server that ignores clients that disconnect and records every other error."""

    daemon_threads = True

    def __init__(self, directory: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> None:
        super().__init__(("127.0.0.1", 0), partial(handler, directory=str(directory)))
        self.errors: list[str] = []

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], CLIENT_WENT_AWAY):
            return
        self.errors.append(traceback.format_exc())
        super().handle_error(request, client_address)  # still printed, and the test fails on it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve(directory: Path, handler: type[SimpleHTTPRequestHandler] = QuietHandler) -> QuietServer:
    """Start a QuietServer on a free port in a background thread."""
    server = QuietServer(directory, handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def book_server() -> QuietServer:
    if not (HTML / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make book` first")
    server = serve(HTML)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def site(book_server: QuietServer) -> str:
    return book_server.url


@pytest.fixture(scope="session")
def browser() -> Browser:
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        pytest.skip("no chromium on PATH")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def block(route: Route, blocked: list[str]) -> None:
    """Refuse an outside request and record it."""
    blocked.append(route.request.url)
    route.abort()


@dataclass
class PageLog:
    """What went wrong while a page was open, less the known icon-font 404s.

    Requests are counted by the document that issued them: `document` goes up each time the main
    frame commits a navigation. A request is excused only when it failed with ERR_ABORTED after the
    test called `leave()` on the document that issued it, and it was not itself a navigation.
    """

    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    failed: list[str] = field(default_factory=list)  # requests that failed or returned >= 400
    blocked: list[str] = field(default_factory=list)  # outside requests not served locally
    abandoned: list[str] = field(default_factory=list)  # aborted because the test left their page
    server_errors: list[str] = field(default_factory=list)  # the local server's own errors, all tests
    server_errors_before: int = 0  # how many of them came before this page was opened
    document: int = 0
    issued_by: dict[Request, int] = field(default_factory=dict)
    left: set[int] = field(default_factory=set)

    def leave(self) -> None:
        """Say that the test is about to navigate away from the current document."""
        self.left.add(self.document)

    def committed(self, frame: Frame, main_frame: Frame) -> None:
        if frame == main_frame:
            self.document += 1

    def issued(self, request: Request) -> None:
        self.issued_by[request] = self.document

    def console(self, kind: str, text: str, url: str) -> None:
        if kind == "error" and not KNOWN_ICON_FONT_404.search(url):
            self.errors.append(f"{text} [{url}]")

    def request_failed(self, request: Request) -> None:
        why = request.failure
        left_by_test = self.issued_by.get(request) in self.left and not request.is_navigation_request()
        if why == "net::ERR_ABORTED" and left_by_test:
            self.abandoned.append(request.url)
        elif not KNOWN_ICON_FONT_404.search(request.url):
            self.failed.append(f"{request.url} ({why})")

    def response_status(self, url: str, status: int) -> None:
        if status >= 400 and not KNOWN_ICON_FONT_404.search(url):
            self.failed.append(f"{url} ({status})")

    def problems(self) -> list[str]:
        return self.errors + self.failed + self.blocked + self.server_errors[self.server_errors_before :]


def watch(page: Page, log: PageLog) -> None:
    """Record in `log` every console error, page error, failed request and navigation of `page`."""
    page.on("console", lambda msg: log.console(msg.type, msg.text, msg.location.get("url", "")))
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    page.on("request", log.issued)
    page.on("framenavigated", lambda frame: log.committed(frame, page.main_frame))
    page.on("requestfailed", log.request_failed)
    page.on("response", lambda response: log.response_status(response.url, response.status))


@pytest.fixture
def page(browser: Browser, book_server: QuietServer) -> tuple[Page, PageLog]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    log = PageLog(server_errors=book_server.errors, server_errors_before=len(book_server.errors))
    context.route(OUTSIDE, lambda route: block(route, log.blocked))
    page = context.new_page()
    watch(page, log)
    yield page, log
    context.close()
