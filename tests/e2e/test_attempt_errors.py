"""An attempt's recorded ``error``: one line, secret-free, never contradicting the receiver's status.

A worker process delivers to raw-socket receivers on loopback that answer with broken HTTP, and
to a receiver the network guard refuses; the attempts are read back through the API.
"""

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Processes, Tenant
from tests.support.poll import poll
from webhooks.outbound.netguard import ALLOW_HINT

SECRET = "tok3n-s3cr3t"
BROKEN = {
    # status line 200, then a header whose name is not an HTTP token
    "bad-header": b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\nok",
    "bad-status": b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nok",
    "silent-close": b"",
}
EXPECTED = {
    "bad-header": "malformed HTTP response from the receiver: invalid header token",
    "bad-status": "malformed HTTP response from the receiver: bad status line: invalid status code",
    "short-body": "incomplete HTTP response from the receiver: not enough data to satisfy content length"
    " header (received 2 of 100 bytes)",
    "silent-close": "connection closed by the receiver before a complete answer",
}


class RawReceiver:
    """Accepts connections on loopback, reads the request, writes ``answer`` as is and closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests += 1
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def raw_receivers() -> Iterator[dict[str, RawReceiver]]:
    receivers = {name: RawReceiver(answer) for name, answer in BROKEN.items()}
    yield receivers
    for r in receivers.values():
        r.close()


def kind(name: str) -> str:
    return "broken." + name.replace("-", "_")


def dead(api: httpx.Client, tenant: Tenant, delivery_id: str) -> dict[str, Any]:
    return poll(
        lambda: (
            (d := api.get(f"/v1/deliveries/{delivery_id}", headers=tenant.auth).json())["status"] == "dead"
            and d
        ),
        what=f"delivery {delivery_id} to be dead",
    )


def assert_clean(error: str) -> None:
    assert "\n" not in error and "\r" not in error, error
    assert SECRET not in error and "user:pw" not in error, error
    assert "400" not in error, "nobody answered 400: " + error


def test_a_malformed_answer_is_recorded_on_one_line_without_a_status_it_never_had(
    api: httpx.Client, tenant: Tenant, raw_receivers: dict[str, RawReceiver], procs: Processes
) -> None:
    for name, r in raw_receivers.items():
        made = api.post(
            "/v1/endpoints",
            json={"url": f"http://127.0.0.1:{r.port}/{name}?token={SECRET}", "event_types": [kind(name)]},
            headers=tenant.auth,
        )
        assert made.status_code == 201, made.text
    procs.worker(env={"WEBHOOKS_RETRY_SCHEDULE": "0.1"})

    for name, r in raw_receivers.items():
        ev = api.post(
            "/v1/events", json={"event_type": kind(name), "payload": {}}, headers=tenant.auth
        ).json()
        d = dead(api, tenant, ev["deliveries"][0]["id"])

        assert r.requests == 2, f"{name}: each attempt reached the receiver"
        for attempt in d["attempts"]:
            assert attempt["status_code"] is None, attempt
            assert attempt["error"] == EXPECTED[name], attempt
            assert_clean(attempt["error"])


def test_a_refusal_by_the_network_guard_reads_refused_once(
    api: httpx.Client, tenant: Tenant, raw_receivers: dict[str, RawReceiver], procs: Processes
) -> None:
    port = raw_receivers["bad-header"].port
    for host in ("127.0.0.1", "localhost"):
        made = api.post(
            "/v1/endpoints", json={"url": f"http://{host}:{port}/x?token={SECRET}"}, headers=tenant.auth
        )
        assert made.status_code == 201, made.text
    procs.worker(env={"WEBHOOKS_ALLOW_PRIVATE_TARGETS": "false", "WEBHOOKS_RETRY_SCHEDULE": "0.1"})

    ev = api.post("/v1/events", json={"event_type": "a.b", "payload": {}}, headers=tenant.auth).json()
    errors = [a["error"] for d in ev["deliveries"] for a in dead(api, tenant, d["id"])["attempts"]]

    assert len(errors) == 4
    assert sorted(set(errors)) == [
        f"refused: 127.0.0.1 is not a public address (loopback); {ALLOW_HINT}",
        f"refused: localhost resolves only to forbidden addresses (127.0.0.1: loopback); {ALLOW_HINT}",
    ]
    assert "WEBHOOKS_ALLOW_PRIVATE_TARGETS" in ALLOW_HINT  # the refusal says how to allow it
    for error in errors:
        assert_clean(error)
    assert raw_receivers["bad-header"].requests == 0
