"""A tiny HTTP forward proxy on loopback that counts what passes through it.

- ``CONNECT host:port`` (how https targets are reached): answers 200 and tunnels bytes both ways;
  recorded in :attr:`ForwardProxy.tunnels`.
- absolute-form requests (``POST http://host:port/path``, how http targets are reached): forwarded
  one by one on a fresh upstream connection; recorded in :attr:`ForwardProxy.forwarded`.

Upstream connections leave from ``source`` (``127.0.0.2`` by default), so a receiver on
``127.0.0.1`` tells the proxy's connections from direct ones by their peer address. Runs its own
event loop in a thread; :meth:`stop` closes everything.
"""

import asyncio
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Passed:
    method: str
    target: str  # "host:port" for CONNECT, the absolute URL otherwise
    proxy_authorization: str | None


class ForwardProxy:
    def __init__(self, source: str = "127.0.0.2") -> None:
        self.source = source
        self.passed: list[Passed] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> "ForwardProxy":
        self.thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", 0), self.loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    @property
    def tunnels(self) -> list[Passed]:
        with self.lock:
            return [p for p in self.passed if p.method == "CONNECT"]

    @property
    def forwarded(self) -> list[Passed]:
        with self.lock:
            return [p for p in self.passed if p.method != "CONNECT"]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request from the client; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
        auth = next((v for k, v in headers if k.lower() == "proxy-authorization"), None)
        with self.lock:
            self.passed.append(Passed(method, target, auth))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port), local_addr=(self.source, 0))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return False
        url = urlsplit(target)
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = await reader.readexactly(length)
        up_reader, up_writer = await asyncio.open_connection(
            url.hostname, url.port or 80, local_addr=(self.source, 0)
        )
        hop_by_hop = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}
        kept = "".join(f"{k}: {v}\r\n" for k, v in headers if k.lower() not in hop_by_hop)
        path = url.path + (f"?{url.query}" if url.query else "")
        request = f"{method} {path} HTTP/1.1\r\n{kept}Connection: close\r\n\r\n"
        up_writer.write(request.encode("latin-1") + body)
        await up_writer.drain()
        writer.write(await up_reader.read())  # the receiver closes after its answer (Connection: close)
        await writer.drain()
        up_writer.close()
        return True


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
