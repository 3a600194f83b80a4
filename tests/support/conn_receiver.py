"""An HTTP/1.1 receiver on loopback that counts its connections: open now, most open at once, opened
in all, and requests per connection.

A bare :class:`asyncio.Protocol` on a thread and event loop of its own, so every TCP connection is
seen as it opens (``connection_made``) and closes (``connection_lost``), idle kept-alive ones too
(an HTTP framework counts requests, not connections). It answers every POST with 200 after
``delay_s`` and keeps the connection open for the next request (no pipelining: a sender writes
its next request after reading the answer). Requests carry a ``webhook-id``; :attr:`delivered`
holds each (path, webhook-id) once.
"""

import asyncio
import ssl
import threading

_BODY = b'{"received":true}'
_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_BODY),
    _BODY,
)


class ConnReceiver:
    def __init__(
        self, host: str = "127.0.0.1", delay_s: float = 0.02, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.tls = tls  # https: a connection counts once its TLS handshake is done
        self.port = 0
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.open_now = 0
        self.peak_open = 0
        self.opened = 0
        self.requests = 0
        self.per_connection: list[int] = []  # requests on each closed connection
        self.delivered: set[tuple[str, str]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="conn-receiver", daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/{path}"

    def start(self) -> "ConnReceiver":
        self._thread.start()
        made = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _Conn(self), self.host, 0, backlog=1024, ssl=self.tls),
            self._loop,
        )
        self._server = made.result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._close(self._server), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _close(self, server: asyncio.Server) -> None:
        server.close()
        for transport in list(self._transports):
            transport.abort()
        await server.wait_closed()
        await asyncio.sleep(0)  # connection_lost runs

    def reuse(self) -> float:
        """Requests per connection opened so far."""
        with self.lock:
            return self.requests / self.opened if self.opened else 0.0


class _Conn(asyncio.Protocol):
    def __init__(self, owner: ConnReceiver) -> None:
        self.owner = owner
        self.buffer = b""
        self.served = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner._transports.add(transport)
        with self.owner.lock:
            self.owner.open_now += 1
            self.owner.opened += 1
            self.owner.peak_open = max(self.owner.peak_open, self.owner.open_now)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.owner._transports.discard(self.transport)
        with self.owner.lock:
            self.owner.open_now -= 1
            self.owner.per_connection.append(self.served)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < head_end + 4 + length:
            return
        self.buffer = self.buffer[head_end + 4 + length :]
        self.served += 1
        with self.owner.lock:
            self.owner.requests += 1
            self.owner.delivered.add((lines[0].split(" ")[1], headers.get("webhook-id", "")))
        asyncio.get_running_loop().call_later(self.owner.delay_s, self._answer)

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_ANSWER)
