"""The tenant portal in an iframe of the SaaS's own site: allowed by WEBHOOKS_PORTAL_FRAME_ANCESTORS only.

The "SaaS site" is a page served from ``http://localhost:<port>`` and the API
runs on ``http://127.0.0.1:<port>``: two different sites to the browser, so the
portal sits in a third-party frame, where only a ``SameSite=None; Secure``
cookie is sent.
"""

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, api_config
from tests.support.api_server import ApiServer
from tests.support.poll import poll

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


class SaasSite:
    """A page at http://localhost:<port>/ that embeds ``src`` in an iframe."""

    def __init__(self) -> None:
        self.src = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = (
                    "<!doctype html><title>SaaS dashboard</title><h1>Our dashboard</h1>"
                    f'<iframe id="portal" title="webhooks portal" src="{site.src}" width="900" height="700">'
                    "</iframe>"
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.server_address[1]}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def saas() -> Iterator[SaasSite]:
    site = SaasSite()
    yield site
    site.stop()


def portal_link(base_url: str, name: str) -> tuple[str, str]:
    """A new tenant with one endpoint, and a portal link into it: ``(link, endpoint url)``."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=base_url) as api:
        tenant = api.post("/v1/tenants", json={"name": name}, headers=admin).json()
        endpoint_url = f"http://127.0.0.1:9/ok/{name}"
        key = {"Authorization": f"Bearer {tenant['api_key']}"}
        assert api.post("/v1/endpoints", json={"url": endpoint_url}, headers=key).status_code == 201
        link = api.post(f"/v1/tenants/{tenant['id']}/portal-links", headers=admin)
        assert link.status_code == 201, link.text
        return link.json()["url"], endpoint_url


def test_the_portal_works_inside_an_iframe_of_the_allowed_site(
    browse: Any, redis_url: str, saas: SaasSite
) -> None:
    config = dataclasses.replace(api_config(redis_url), portal_frame_ancestors=saas.url.rstrip("/"))
    server = ApiServer(config).start()
    try:
        saas.src, endpoint_url = portal_link(server.url, "embedded")
        window = browse(base_url=saas.url)
        page = window.new_page()
        page.goto(saas.url)
        frame = page.frame_locator("#portal")
        expect(frame.get_by_role("link", name=endpoint_url)).to_be_visible()
        expect(frame.get_by_text("embedded · webhooks portal")).to_be_visible()
        # Moving around inside the frame keeps the session: the cookie goes along in a third-party frame.
        frame.get_by_role("link", name="Events").click()
        expect(frame.get_by_role("heading", name="Events")).to_be_visible()
        (cookie,) = [c for c in window.context.cookies() if c["name"] == "wh_console"]
        assert cookie["sameSite"] == "None" and cookie["secure"] and cookie["httpOnly"]
        # Only the portal's pages may be framed; the operator's sign-in page still may not.
        login = httpx.get(server.url + "/console/login")
        assert login.headers["content-security-policy"].endswith("frame-ancestors 'none'")
        fresh, _ = portal_link(server.url, "second")
        opened = httpx.get(fresh)
        assert opened.status_code == 303
        set_cookie = opened.headers["set-cookie"]
        for attribute in ("HttpOnly", "Secure", "SameSite=none", "Partitioned", "Path=/console"):
            assert attribute in set_cookie, set_cookie
        used = httpx.get(saas.src)
        assert used.status_code == 410 and used.headers["content-security-policy"].endswith(
            f"frame-ancestors {saas.url.rstrip('/')}"
        )
    finally:
        server.stop()


def test_by_default_the_portal_refuses_to_be_framed(
    browse: Any, api_server: ApiServer, redis_url: str, saas: SaasSite
) -> None:
    saas.src, endpoint_url = portal_link(api_server.url, "framed")
    window = browse(base_url=saas.url)
    page = window.new_page()
    page.goto(saas.url)
    expect(page.get_by_role("heading", name="Our dashboard")).to_be_visible()
    poll(lambda: any("frame-ancestors 'none'" in p for p in window.problems), what="the refusal to frame")
    expect(page.frame_locator("#portal").get_by_role("link", name=endpoint_url)).to_have_count(0)
    window.problems[:] = [p for p in window.problems if "frame-ancestors 'none'" not in p]  # expected
