"""A real HTTP receiver on loopback that records every request and answers by path.

Paths (``<name>`` is free text so tests can tell endpoints apart):

- ``/ok/<name>``: 200
- ``/fail/<name>``: 500
- ``/flaky/<n>/<name>``: 500 for the first ``n`` requests to this path, then 200
- ``/status/<code>/<name>``: that status (``410`` gone, ``302`` redirect...)
- ``/retry-after/<seconds>/<name>``: 429 with ``Retry-After``
- ``/slow/<ms>/<name>``: 200 after ``ms`` milliseconds
- ``/hang/<name>``: never answers (until the server stops)
- ``/switch/<name>``: 503 while ``<name>`` is in :attr:`Receiver.down`, else 200
- ``/throttle/<n>/<ms>/<name>``: 502 for the first ``n`` requests, then 200 after ``ms`` milliseconds

Every path's requests in flight are counted; :attr:`Receiver.peak` keeps the most seen at once.
"""

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: str = ""  # the client's address: a forward proxy's, when deliveries go through one


class _Server(ThreadingHTTPServer):
    # A burst of new connections (a worker starting a lease's requests at once) would overflow the
    # default listen backlog of 5: the dropped SYNs are retried after 1 s, then 3 s, which a
    # delivery's request timeout counts against the receiver.
    request_queue_size = 128
    daemon_threads = True


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.down: set[str] = set()
        self.concurrency: dict[str, list[int]] = defaultdict(list)  # requests in flight at each arrival
        self.answered: dict[str, list[int]] = defaultdict(list)  # the statuses sent back, in order
        self.stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec = Received(self.path, headers, body, time.time(), str(self.client_address[0]))
                with receiver.lock:
                    receiver.requests.append(rec)
                    receiver.counts[self.path] += 1
                    seen = receiver.counts[self.path]
                    receiver.in_flight[self.path] += 1
                    receiver.peak[self.path] = max(receiver.peak[self.path], receiver.in_flight[self.path])
                    receiver.concurrency[self.path].append(receiver.in_flight[self.path])
                try:
                    status, extra = receiver.answer(self.path, seen)
                finally:
                    with receiver.lock:
                        receiver.in_flight[self.path] -= 1
                if status is None:
                    receiver.stopping.wait()
                    return
                payload = b'{"received": true}'
                with receiver.lock:
                    receiver.answered[self.path].append(status)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, seen: int) -> tuple[int | None, dict[str, str]]:
        parts = path.strip("/").split("/")
        kind = parts[0]
        if kind == "ok":
            return 200, {}
        if kind == "fail":
            return 500, {}
        if kind == "flaky":
            return (500 if seen <= int(parts[1]) else 200), {}
        if kind == "status":
            code = int(parts[1])
            return code, ({"location": "http://127.0.0.1:1/elsewhere"} if 300 <= code < 400 else {})
        if kind == "retry-after":
            return 429, {"retry-after": parts[1]}
        if kind == "slow":
            time.sleep(int(parts[1]) / 1000)
            return 200, {}
        if kind == "hang":
            return None, {}
        if kind == "throttle":
            if seen <= int(parts[1]):
                return 502, {}
            time.sleep(int(parts[2]) / 1000)
            return 200, {}
        if kind == "switch":
            return (503 if parts[1] in self.down else 200), {}
        return 404, {}

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + "/" + path.lstrip("/")

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == "/" + path.lstrip("/")]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.requests)
