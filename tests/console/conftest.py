"""Fixtures of the console tests: Debian's headless Chromium driven by Playwright, signed-in pages.

The browser is the real one (``/usr/bin/chromium``, installed by ``.ci/run``);
``playwright install`` is never used. Without Chromium or Playwright the browser
tests skip, saying which is missing. Every page a test opens is watched: a
script error or a Content-Security-Policy violation fails the test.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api_server import ApiServer
from tests.webhooks.conftest import ar, loop  # noqa: F401 - the domain tests' asyncio fixtures

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


# Module scope: while Playwright's sync API is open it keeps an asyncio loop running in this thread,
# so it must be closed before other modules' tests run loops of their own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not at /usr/bin/chromium (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (.[test] extra)"
    )
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Watched:
    """A browser context whose pages record script errors and CSP violations."""

    def __init__(self, browser: Any, base_url: str, **options: Any) -> None:
        self.context = browser.new_context(base_url=base_url, **options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.problems: list[str] = []
        self.context.on("page", self._watch)

    def _watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        # A page answered with an error status is logged as a failed load: _response judges those.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.problems.append(f"{response.status} for {response.request.resource_type} {response.url}")

    def new_page(self) -> Any:
        return self.context.new_page()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def browse(browser: Any, api_server: ApiServer, redis_url: str) -> Iterator[Any]:
    """``browse(**context options)``: a fresh browser context (its own cookies) on the API server."""
    opened: list[Watched] = []

    def make(base_url: str | None = None, **options: Any) -> Watched:
        opened.append(Watched(browser, base_url or api_server.url, **options))
        return opened[-1]

    yield make
    problems = [p for w in opened for p in w.problems]
    for w in opened:
        w.close()
    assert not problems, f"script errors or CSP violations on the console's pages: {problems}"


@pytest.fixture
def page(browse: Any) -> Any:
    return browse().new_page()


def sign_in(page: Any, token: str) -> None:
    """Sign in with the keyboard only: the token field has the focus, Enter submits."""
    page.goto("/console")
    page.wait_for_url("**/console/login")
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/(endpoints|tenants)$"))


def assert_labelled(page: Any) -> None:
    """Every visible form control on the page has a label (or an aria-label)."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
            .map(el => el.outerHTML)"""
    )
    assert unlabelled == [], unlabelled


@pytest.fixture
def http_sign_in() -> Iterator[Any]:
    """``http_sign_in(base_url, token)``: a plain HTTP client signed into the console (cookies kept)."""
    clients: list[httpx.Client] = []

    def make(base_url: str, token: str) -> httpx.Client:
        clients.append(client := httpx.Client(base_url=base_url, timeout=30))
        form = client.get("/console/login")
        login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
        assert login_csrf, form.text
        done = client.post("/console/login", data={"login_csrf": login_csrf.group(1), "token": token})
        assert done.status_code == 303, done.text
        return client

    yield make
    for client in clients:
        client.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
