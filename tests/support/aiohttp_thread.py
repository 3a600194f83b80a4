"""An aiohttp application served on a thread and event loop of its own (the tests' receivers)."""

import asyncio
import threading

from aiohttp import web


class AiohttpThread:
    """Serve ``app`` on ``host``:``port`` (0: any free port, read back into :attr:`port`) until
    :meth:`stop`. :meth:`start` returns once the socket listens, and raises when it cannot bind."""

    def __init__(self, app: web.Application, host: str, port: int = 0, *, name: str = "receiver") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.started = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> int:
        self.thread.start()
        if not self.started.wait(10) or self.error is not None:
            raise RuntimeError(f"the server did not start on {self.host}:{self.port}: {self.error!r}")
        return self.port

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        try:
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port, backlog=1024, reuse_address=True)
            self.loop.run_until_complete(site.start())
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = int(server.sockets[0].getsockname()[1])
        except (OSError, RuntimeError, AssertionError) as exc:  # reported by start()
            self.error = exc
            self.started.set()
            return
        self.started.set()
        lowlevel = runner.server  # aiohttp's server: it lists the connections it holds
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        # A connection accepted while the site was stopping (a worker reconnecting) may still be a
        # pending accept task, or become a connection after cleanup closed the others: let those
        # tasks take their first steps, then close whatever is still open (else a ResourceWarning).
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))
        for handler in lowlevel.connections if lowlevel is not None else []:
            if handler.transport is not None:
                handler.transport.abort()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def stop(self) -> None:
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
