"""``python -m webhooks.healthcheck``, the containers' health check, against a real HTTP server."""

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.redis_proc import free_port


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status = 200 if self.path in {"/healthz", "/metrics"} else 503
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhooks.healthcheck", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_healthy_when_the_url_answers_200(server: int) -> None:
    result = check(f"http://127.0.0.1:{server}/metrics")
    assert (result.returncode, result.stderr) == (0, "")


def test_unhealthy_on_another_status_with_one_line_naming_it(server: int) -> None:
    result = check(f"http://127.0.0.1:{server}/readyz")
    assert result.returncode == 1
    assert result.stderr.strip() == f"unhealthy: http://127.0.0.1:{server}/readyz: HTTP 503"


def test_unhealthy_when_nothing_listens_or_the_url_is_not_http() -> None:
    refused = check(f"http://127.0.0.1:{free_port()}/healthz", "--timeout-s", "2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "ConnectionRefusedError" in refused.stderr or "URLError" in refused.stderr
    bad = check("file:///etc/passwd")
    assert bad.returncode == 1 and "not an http(s) URL" in bad.stderr


def test_default_url_is_the_api_liveness_route_on_the_configured_port(server: int) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    assert check(env={**env, "WEBHOOKS_API_PORT": str(server)}).returncode == 0
    assert check("--timeout-s", "2", env={**env, "WEBHOOKS_API_PORT": str(free_port())}).returncode == 1
