"""``webhooks demo``: the durability promise shown in under a minute, on a stack of its own.

In a temporary data folder, on free ports and with none of the caller's ``WEBHOOKS_*`` settings,
it starts an embedded Redis, the API, the scheduler and one worker (cli/supervisor.py: they end
with the demo however it ends), and a local receiver that verifies every signature and answers in
20-50 ms (cli/demo_receiver.py). It registers an endpoint, sends the events at a steady pace,
SIGKILLs the worker while requests are in flight, lets the backlog wait, starts a new worker and
waits until every event has arrived. Leases last ``LEASE_TTL_S`` (2 s, not the 10 s default) so
the killed worker's deliveries come back quickly. The summary counts what the receiver saw:
sent, delivered, lost, duplicates (and why), signatures verified. Exit status 0 when nothing was
lost and every signature verified. The folder is removed at the end (kept, and named, on failure
or with ``--verbose``).
"""

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live

from cli.demo_receiver import VerifyingReceiver
from cli.demo_view import DemoState, DemoSummary, plural, print_summary, render
from cli.embedded import EmbeddedRedis, find_server, free_port
from cli.snapshot import PlatformStatus, snapshot
from cli.supervisor import Supervisor
from webhooks.errors import WebhooksError
from webhooks.runtime.connection import RedisTarget, async_client
from webhooks.settings import Settings

ME = [sys.executable, "-m", "cli"]
LEASE_TTL_S = 2.0
SEND_RATE_PER_S = 30.0
KILL_AT_SHARE = 0.4
BACKLOG_WAIT_S = 3.0
SETTLE_TIMEOUT_S = 40.0


class DemoFailed(WebhooksError):
    """The demo's stack did not come up or did not finish in time."""


def cmd_demo(s: Settings, args: argparse.Namespace) -> int:
    if args.events < 10 or args.events > 5000:
        raise DemoFailed("--events: between 10 and 5000")

    def on_term(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the view
    return Demo(s, args).run()


class Producer(threading.Thread):
    """Posts the events at a steady pace; an event is counted once the API answered 202."""

    def __init__(self, api_url: str, api_key: str, n: int, rate_per_s: float) -> None:
        super().__init__(name="demo-producer", daemon=True)
        self.api_url, self.api_key, self.n, self.rate_per_s = api_url, api_key, n, rate_per_s
        self.accepted: list[str] = []
        self.failures = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        auth = {"Authorization": f"Bearer {self.api_key}"}
        start = time.monotonic()
        with httpx.Client(base_url=self.api_url, timeout=10) as client:
            for i in range(self.n):
                if self.stopping.wait(max(0.0, start + i / self.rate_per_s - time.monotonic())):
                    return
                body = {"event_type": "order.paid", "payload": {"order": i, "amount": 100 + i}}
                headers = {**auth, "Idempotency-Key": uuid.uuid4().hex}  # a retry makes no second event
                for _ in range(5):
                    try:
                        resp = client.post("/v1/events", json=body, headers=headers)
                        if resp.status_code == 202:
                            self.accepted.append(resp.json()["id"])
                            break
                    except httpx.HTTPError:
                        pass
                    self.failures += 1
                    time.sleep(0.2)


class Demo:
    def __init__(self, s: Settings, args: argparse.Namespace) -> None:
        self.s, self.args = s, args
        self.folder = Path(tempfile.mkdtemp(prefix="webhooks-demo-"))
        self.console = Console(highlight=False)
        self.live_view = self.console.is_terminal and not args.json
        self.state = DemoState(total=args.events)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(24)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
        env.update(
            WEBHOOKS_API_HOST="127.0.0.1",
            WEBHOOKS_API_PORT=str(self.port),
            WEBHOOKS_ADMIN_TOKEN=self.admin_token,
            WEBHOOKS_SECRET_KEY=secrets.token_urlsafe(48),
            WEBHOOKS_DATA_DIR=str(self.folder),
            WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",  # the receiver is on loopback
            WEBHOOKS_LEASE_TTL_S=str(LEASE_TTL_S),
            WEBHOOKS_WORKER_CONCURRENCY="4",
            WEBHOOKS_ENDPOINT_CONCURRENCY="4",
            WEBHOOKS_RETRY_SCHEDULE="1,1,2,5",
            WEBHOOKS_REQUEST_TIMEOUT_S="5",
        )
        self.sup = Supervisor(self.folder / "logs", env)
        self.receiver = VerifyingReceiver()
        self.redis: EmbeddedRedis | None = None
        self.loop = asyncio.new_event_loop()
        self.r: Any = None
        self.producer: Producer | None = None
        self.live: Live | None = None
        self.last: PlatformStatus | None = None

    # -- the view ----------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        at = self.state.elapsed()
        self.state.timeline.append((at, text))
        if not self.live_view and not self.args.json:
            print(f"{at:5.1f}s  {text}", flush=True)

    def tick(self) -> None:
        """Refresh the numbers (receiver, Redis) and the live view."""
        tally = self.receiver.snapshot()
        st = self.state
        st.requests, st.verified, st.delivered, st.duplicates = (
            tally.requests,
            tally.verified,
            tally.unique,
            tally.duplicates,
        )
        st.sent = len(self.producer.accepted) if self.producer else 0
        if self.r is not None:
            self.last = self.loop.run_until_complete(snapshot(self.r, int(time.time() * 1000)))
            st.ready, st.in_flight, st.retrying = self.last.ready, self.last.leased, self.last.retry_backlog
        if self.live is not None:
            self.live.update(render(st))

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self.tick()
            if done():
                return
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout_s:g}s waiting for {what}; logs in {self.folder}")
            time.sleep(0.1)

    # -- the script ---------------------------------------------------------------------------------

    def run(self) -> int:
        ok = False
        try:
            live = (
                Live(render(self.state), console=self.console, refresh_per_second=8)
                if self.live_view
                else None
            )
            with live if live is not None else nullcontext():
                self.live = live
                summary = self.script()
                self.tick()
            if self.args.json:
                print(json.dumps({**dataclasses.asdict(summary), "ok": summary.ok}))
            else:
                print_summary(self.console, summary)
            ok = summary.ok
            return 0 if ok else 1
        finally:
            self.cleanup(keep=not ok or self.args.verbose)

    def script(self) -> DemoSummary:
        st = self.state
        st.phase = "starting an embedded stack"
        server = find_server(self.s.embedded_server)
        self.redis = EmbeddedRedis(self.folder / "redis", server, self.sup.log_dir / "redis.log")
        url = self.redis.start(
            lambda argv: self._proc(self.sup.spawn("redis", argv, log=False, restart=False))
        )
        self.sup.env["WEBHOOKS_REDIS_URL"] = url
        self.r = async_client(RedisTarget(url))
        for name, argv in (
            ("api", ["api"]),
            ("scheduler", ["scheduler"]),
            ("worker-1", ["worker", "--no-scheduler"]),
        ):
            self.sup.spawn(name, [*ME, *argv], restart=False)
        st.workers["worker-1"] = "starting"
        self.wait(self._api_ready, 60, "the API")
        self.wait(lambda: bool(self.last and self.last.workers), 60, "worker-1 to register")
        st.workers["worker-1"] = "running"
        self.note(f"stack up: {server.name} {server.version} ({server.source}), API, scheduler, worker-1")
        self.note(f"leases last {LEASE_TTL_S:g} s in this demo (WEBHOOKS_LEASE_TTL_S; default 10 s)")

        self.receiver.start()
        key = self._register()
        self.note("endpoint registered: a local receiver that verifies every signature, answers in 20-50 ms")
        self.producer = Producer(self.api_url, key, st.total, SEND_RATE_PER_S)
        self.producer.start()
        st.phase = f"sending {st.total} events at {SEND_RATE_PER_S:g}/s"
        self.note(st.phase)
        kill_at = int(st.total * KILL_AT_SHARE)
        self.wait(lambda: st.sent >= kill_at, 60, f"{kill_at} events to be accepted")
        in_flight = self._wait_in_flight(3.0)
        reclaimed_before = self.last.counters.get("deliveries_reclaimed", 0) if self.last else 0
        killed_at = st.sent
        pid = self.sup.kill("worker-1")
        kill_time = time.time()
        st.workers["worker-1"] = f"SIGKILLed (pid {pid})"
        busy = plural(in_flight, "request")
        self.note(f"SIGKILL worker-1 (pid {pid}) after event {killed_at}, with {busy} in flight")
        st.phase = "no worker: the backlog waits; the dead worker's lease expires, the scheduler reclaims it"
        end = time.monotonic() + BACKLOG_WAIT_S
        self.wait(lambda: time.monotonic() >= end, BACKLOG_WAIT_S + 5, "the backlog")
        reclaimed = (self.last.counters.get("deliveries_reclaimed", 0) if self.last else 0) - reclaimed_before
        self.note(f"backlog: {st.ready} ready, {reclaimed} of them back from the dead worker's expired lease")
        self.sup.spawn("worker-2", [*ME, "worker", "--no-scheduler"], restart=False)
        st.workers["worker-2"] = "running"
        self.note("worker-2 started")
        st.phase = "worker-2 catches up"
        self.wait(self._settled, SETTLE_TIMEOUT_S, "every event to arrive")
        reclaimed = (self.last.counters.get("deliveries_reclaimed", 0) if self.last else 0) - reclaimed_before
        st.phase = "done: every event arrived"
        self.note(st.phase)
        return self._summary(server.describe(), killed_at, in_flight, reclaimed, kill_time)

    @staticmethod
    def _proc(child: Any) -> Any:
        assert child.proc is not None
        return child.proc

    def _api_ready(self) -> bool:
        try:
            return httpx.get(self.api_url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _register(self) -> str:
        admin = {"Authorization": f"Bearer {self.admin_token}"}
        with httpx.Client(base_url=self.api_url, timeout=10) as api:
            tenant = api.post("/v1/tenants", json={"name": "demo"}, headers=admin)
            tenant.raise_for_status()
            key = str(tenant.json()["api_key"])
            ep = api.post(
                "/v1/endpoints", json={"url": self.receiver.url}, headers={"Authorization": f"Bearer {key}"}
            )
            ep.raise_for_status()
            self.receiver.secret = ep.json()["secret"]
        return key

    def _wait_in_flight(self, timeout_s: float) -> int:
        """Wait (briefly) until the receiver is busy with requests, so the kill lands mid-request."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy = self.receiver.snapshot().in_progress
            if busy:
                return busy
            time.sleep(0.002)
        return 0

    def _settled(self) -> bool:
        st, last = self.state, self.last
        producer_done = self.producer is not None and not self.producer.is_alive()
        return (
            producer_done
            and st.delivered >= len(self.producer.accepted if self.producer else [])
            and last is not None
            and last.ready == 0
            and last.leases == 0
            and last.retry_backlog == 0
        )

    def _summary(
        self, server: str, killed_at: int, in_flight: int, reclaimed: int, kill_time: float
    ) -> DemoSummary:
        tally = self.receiver.snapshot()
        accepted = set(self.producer.accepted if self.producer else [])
        dup_ids = [k for k, times in tally.arrivals.items() if len(times) > 1]
        return DemoSummary(
            events=self.state.total,
            sent=len(accepted),
            delivered=len(accepted & set(tally.arrivals)),
            lost=len(accepted - set(tally.arrivals)),
            duplicates=tally.duplicates,
            duplicates_sent_before_kill=sum(
                len(tally.arrivals[k]) - 1 for k in dup_ids if min(tally.arrivals[k]) < kill_time
            ),
            reclaimed=reclaimed,
            requests=tally.requests,
            verified=tally.verified,
            rejected=tally.rejected,
            killed_at_event=killed_at,
            in_flight_at_kill=in_flight,
            lease_ttl_s=LEASE_TTL_S,
            server=server,
            took_s=self.state.elapsed(),
        )

    def cleanup(self, keep: bool) -> None:
        if self.producer is not None:
            self.producer.stopping.set()
            self.producer.join(timeout=5)
        self.sup.stop([n for n in self.sup.children if n != "redis"], timeout_s=10)
        if self.redis is not None:
            self.redis.stop()
        self.sup.close()
        self.receiver.stop()
        if self.r is not None:
            self.loop.run_until_complete(self.r.aclose())
        self.loop.close()
        if keep:
            print(f"the demo's data and logs are kept in {self.folder}", file=sys.stderr)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
