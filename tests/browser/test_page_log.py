"""The browser tests' own referee: PageLog and QuietServer, on a small site made for the purpose.

These tests show that the log still fails a test on a missing file, a dropped connection or a
server error, and that it excuses exactly one thing: a request of a page the test said it was
leaving, aborted by that navigation. The held request below reproduces, every time, what made
the chapter-walk test flaky: a favicon or a font still loading when "next" was clicked.
"""

from __future__ import annotations

import re
import threading
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import PageLog, QuietServer, serve, watch
from playwright.sync_api import Browser, Page, expect

PAGES = {
    "a.html": '<h1>A</h1><img src="held.png"><a id="next" href="b.html">next</a>',
    "b.html": "<h1>B</h1>",
    "missing.html": '<h1>M</h1><img src="missing.png">',
    "dropped.html": '<h1>D</h1><img src="dropped.png">',
}
WAIT_S = 20  # an upper bound on waits for conditions, never a sleep


class Handler(SimpleHTTPRequestHandler):
    """Serves the pages; holds held.png until released; closes the socket on dropped.png."""

    arrived = threading.Event()
    release = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/held.png"):
            Handler.arrived.set()
            Handler.release.wait(WAIT_S)
            self.send_error(404)  # whoever is still listening would see an error
        elif self.path.endswith("/dropped.png"):
            self.close_connection = True  # no status line at all: ERR_EMPTY_RESPONSE
        else:
            super().do_GET()


@pytest.fixture
def tiny_site(tmp_path: Path) -> QuietServer:
    for name, body in PAGES.items():
        (tmp_path / name).write_text(f"<!doctype html><html><head><link rel='icon' href='data:,'></head><body>{body}</body></html>")
    Handler.arrived.clear()
    Handler.release.clear()
    server = serve(tmp_path, Handler)
    yield server
    Handler.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def watched(browser: Browser, tiny_site: QuietServer) -> tuple[Page, PageLog]:
    context = browser.new_context()
    page = context.new_page()
    log = PageLog(server_errors=tiny_site.errors)
    watch(page, log)
    yield page, log
    context.close()


def click_next_while_held(page: Page, log: PageLog, site: str, *, announce: bool) -> None:
    """Open a.html, wait until held.png is on its way, then follow the link to b.html."""
    page.goto(f"{site}/a.html", wait_until="domcontentloaded")
    assert Handler.arrived.wait(WAIT_S), "held.png was never requested"
    if announce:
        log.leave()
    with page.expect_event("requestfailed", lambda r: r.url.endswith("/held.png"), timeout=WAIT_S * 1000):
        page.locator("#next").click()
        expect(page).to_have_url(re.compile(r"/b\.html$"))
    Handler.release.set()


def test_a_request_aborted_by_the_tests_own_navigation_is_excused(watched, tiny_site) -> None:
    page, log = watched
    click_next_while_held(page, log, tiny_site.url, announce=True)
    page.wait_for_load_state("load")
    assert log.problems() == []
    assert [url.rsplit("/", 1)[-1] for url in log.abandoned] == ["held.png"]


def test_the_same_abort_without_leave_is_a_problem(watched, tiny_site) -> None:
    page, log = watched
    click_next_while_held(page, log, tiny_site.url, announce=False)
    assert any("held.png (net::ERR_ABORTED)" in p for p in log.problems()), log.problems()
    assert log.abandoned == []


def test_a_missing_file_is_a_problem(watched, tiny_site) -> None:
    page, log = watched
    page.goto(f"{tiny_site.url}/missing.html", wait_until="load")
    assert [p.rsplit("/", 1)[-1] for p in log.failed] == ["missing.png (404)"]
    assert log.abandoned == [] and log.problems()


def test_a_missing_file_is_a_problem_even_after_leave(watched, tiny_site) -> None:
    page, log = watched
    page.goto(f"{tiny_site.url}/b.html", wait_until="load")
    log.leave()
    page.goto(f"{tiny_site.url}/missing.html", wait_until="load")
    assert [p.rsplit("/", 1)[-1] for p in log.failed] == ["missing.png (404)"]
    assert log.abandoned == [] and log.problems()


def test_a_dropped_connection_is_a_problem(watched, tiny_site) -> None:
    page, log = watched
    page.goto(f"{tiny_site.url}/dropped.html", wait_until="load")
    assert [p.rsplit("/", 1)[-1] for p in log.failed] == ["dropped.png (net::ERR_EMPTY_RESPONSE)"]
    assert log.problems()


@pytest.mark.parametrize("error", [BrokenPipeError(), ConnectionResetError()])
def test_the_server_is_quiet_when_a_client_goes_away(tiny_site, capsys, error) -> None:
    try:
        raise error
    except OSError:
        tiny_site.handle_error(None, ("127.0.0.1", 0))
    assert tiny_site.errors == [] and capsys.readouterr().err == ""


def test_any_other_server_error_is_shown_and_fails_the_page(tiny_site, capsys) -> None:
    log = PageLog(server_errors=tiny_site.errors, server_errors_before=len(tiny_site.errors))
    try:
        raise RuntimeError("handler bug")
    except RuntimeError:
        tiny_site.handle_error(None, ("127.0.0.1", 0))
    assert "RuntimeError: handler bug" in capsys.readouterr().err
    assert len(log.problems()) == 1 and "RuntimeError: handler bug" in log.problems()[0]
