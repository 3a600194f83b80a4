"""Real traffic: our platform and the tuned arq peer, in one run, against many TLS receiver hosts.

The receiver (bench/tls_receiver.py, one process) serves TLS on 127.0.0.2 ... 127.0.0.41, one port,
with one certificate from a test CA made for this run; both systems' workers get ``SSL_CERT_FILE=<the
CA>``, which both HTTP stacks honour: ours (aiohttp's default context, ``ssl.create_default_context``,
i.e. OpenSSL's default verify paths) and the arq peer (httpx-aiohttp builds its context with
``httpx.create_ssl_context``, which reads ``SSL_CERT_FILE``). 400 endpoints, 10 per host, their
classes shuffled with a fixed seed: 82 % answer 200 in 20-150 ms ("healthy"), 10 % in 1-2 s, 5 %
always 500, 3 % never answer. Both: request timeout 5 s, retries after 2, 4, 8, 16 s (5 attempts),
2 worker processes; arq keeps the existing bench's tuning (max_jobs=256, AiohttpTransport).
Each event is addressed to one endpoint (ours: the endpoint subscribes to its own event type; arq:
one job per event); events go round-robin over the endpoints.

Phase 1: N deliveries queued at once, then drained; ``healthy/s`` counts the healthy endpoints'
deliveries that arrived after the last submit returned, over the time from then to the last one
(from the first submit when more than half had already arrived). Run twice: with the full mix and
with only the healthy endpoints (the same healthy deliveries), so ``with/without`` compares them.
Phase 2 (full mix): events posted at a steady rate (65 % of the slower system's phase-1 rate, the
same for both) for 20 s; p50/p99 from post to arrival of the healthy deliveries (missing ones count
as infinitely late: "censored").

Run: ``python -m bench.realtraffic [--quick] [--workers 2] [--rate R]``; writes
``bench/out/realtraffic.json``; logs in ``bench/out/logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
import signal
import ssl
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import (
    LOG_DIR,
    OUT_DIR,
    CpuMeter,
    Proc,
    envelope,
    free_port,
    new_secret,
    python_module,
    wait_until,
)
from bench.ours import BATCH, OurPlatform
from bench.systems import Endpoint
from bench.systems_tuned import ArqPeer
from bench.tls_receiver import CONTROL_HOST, host_addresses, make_certs

HOSTS, PER_HOST = 40, 10
MIX = (("fast", 82), ("slow", 10), ("fail", 5), ("hold", 3))  # percent of the endpoints
TIMEOUT_S = 5.0
RETRY_SCHEDULE = "2,4,8,16"  # = the arq peer's Retry(defer=2**try), 5 tries
LOAD_SHARE = 0.65
WARM = "warm"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def endpoint_classes(seed: int = 25) -> list[str]:
    n = HOSTS * PER_HOST
    classes = [c for c, pct in MIX for _ in range(n * pct // 100)]
    random.Random(seed).shuffle(classes)
    return classes


class TlsReceiver:
    def __init__(self, cert_dir: Path) -> None:
        self.port = free_port()
        argv = python_module(
            "-m", "bench.tls_receiver", "--port", str(self.port), "--cert-dir", str(cert_dir)
        )
        self.proc = Proc("tls-receiver", [*argv, "--hosts", str(HOSTS)])
        self.hosts = host_addresses(HOSTS)
        verify = ssl.create_default_context(cafile=str(cert_dir / "ca.pem"))
        self.client = httpx.Client(
            base_url=f"https://{CONTROL_HOST}:{self.port}", verify=verify, timeout=10.0
        )
        wait_until(
            lambda: self.client.get("/healthz").status_code == 200, 20, "the TLS receiver", procs=[self.proc]
        )
        self.ps = psutil.Process(self.proc.pid)

    def urls(self, healthy_only: bool) -> tuple[list[str], list[str]]:
        """(urls, classes) of the endpoints; endpoint i lives on host i % 40."""
        pairs = [
            (f"https://{self.hosts[i % HOSTS]}:{self.port}/{c}/e{i}", c)
            for i, c in enumerate(endpoint_classes())
            if c == "fast" or not healthy_only
        ]
        return [u for u, _ in pairs], [c for _, c in pairs]

    def warm_url(self) -> str:
        return f"https://{CONTROL_HOST}:{self.port}/fast/{WARM}"

    def reset(self, track_latency: bool = False) -> None:
        self.client.post("/reset", json={"track_latency": track_latency}).raise_for_status()

    def stats(self, latency: bool = False) -> dict[str, Any]:
        resp = self.client.get("/stats", params={"latency": "1"} if latency else None)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        self.client.close()
        self.proc.stop()


# --------------------------------------------------------------------------- systems


class Ours(OurPlatform):
    """Ours with the scenario's settings; each endpoint subscribes to its own event type."""

    def __init__(self, ca: Path) -> None:
        super().__init__()
        self.extra_env = {"SSL_CERT_FILE": str(ca), "WEBHOOKS_RETRY_SCHEDULE": RETRY_SCHEDULE}

    def make_endpoints(self, urls: list[str]) -> None:
        tenant = self._call("POST", "/v1/tenants", self.admin_token, (200, 201), json={"name": "realtraffic"})
        self.tenant_key = tenant["api_key"]
        for i, url in enumerate(urls):
            body = {"url": url, "event_types": [f"rt.{i}"]}
            self._call("POST", "/v1/endpoints", self.tenant_key, (200, 201), json=body)

    def post(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        for k in range(0, len(items), BATCH):
            events = [{"event_type": f"rt.{i}", "payload": p} for i, p in items[k : k + BATCH]]
            self._call("POST", "/v1/events/batch", self.tenant_key, (200, 201, 202), json={"events": events})


class Arq(ArqPeer):
    """The tuned arq peer (bench/peers/arq_peer.py) with ``SSL_CERT_FILE`` in its workers' environment."""

    def __init__(self, ca: Path) -> None:
        super().__init__()
        self.ca = ca

    def _start_redis(self, timeout_s: float) -> dict[str, str]:
        return {**super()._start_redis(timeout_s), "SSL_CERT_FILE": str(self.ca)}

    def make_endpoints(self, urls: list[str]) -> None:
        self.endpoints = [Endpoint(url=u, secret=new_secret()) for u in urls]

    def post(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        from bench.peers import arq_jobs

        for k in range(0, len(items), 1000):
            rows = []
            for i, payload in items[k : k + 1000]:
                ep, event_id = self.endpoints[i], f"evt_{uuid.uuid4().hex}"
                rows.append((event_id, ep.url, ep.secret, event_id, envelope(f"rt.{i}", payload).decode()))
            arq_jobs.enqueue_deliveries(self.producer, rows)


SYSTEMS: dict[str, type[Ours] | type[Arq]] = {"ours": Ours, "arq": Arq}


def payload(n: int) -> dict[str, Any]:
    return {
        "n": n,
        "sent_at": time.time(),
        "object": "invoice",
        "customer": "cus_4f9a2c71d0",
        "amount_due": 1999,
    }


class Sampler:
    """Worker CPU (psutil, every worker process and its children) and peak RSS per process."""

    def __init__(self, system: Ours | Arq) -> None:
        self.system = system
        self.cpu: dict[int, float] = {}
        self.cpu0 = self._cpu()
        self.peak_rss_mb = 0.0

    def _cpu(self) -> float:
        for pid in self.system.worker_pids():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                self.cpu[pid] = t.user + t.system
        return sum(self.cpu.values())

    def sample(self) -> None:
        for pid in self.system.worker_pids():
            with contextlib.suppress(psutil.Error):
                self.peak_rss_mb = max(self.peak_rss_mb, psutil.Process(pid).memory_info().rss / 2**20)

    def cpu_s(self) -> float:
        return self._cpu() - self.cpu0


def start(
    name: str, ca: Path, rec: TlsReceiver, workers: int, healthy_only: bool
) -> tuple[Ours | Arq, list[str]]:
    system = SYSTEMS[name](ca)
    system.start(workers, TIMEOUT_S)
    urls, classes = rec.urls(healthy_only)
    system.make_endpoints([*urls, rec.warm_url()])
    rec.reset()
    system.post([(len(urls), payload(-1)) for _ in range(20)])  # warm-up: every worker up and sending
    procs = system.workers if isinstance(system, Ours) else system.procs
    wait_until(lambda: rec.stats()["classes"]["fast"]["unique"] >= 20, 90, f"{name}: warm-up", procs=procs)
    return system, classes


def hosts_summary(st: dict[str, Any]) -> tuple[int, int]:
    """(TLS handshakes = connections accepted, most connections open at once to one host)."""
    return sum(st["accepted"].values()), max(st["max_open"].values(), default=0)


@dataclass
class Row:
    system: str
    variant: str
    deliveries: int = 0
    healthy_expected: int = 0
    healthy_arrived: int = 0
    healthy_per_s: float = 0.0
    rate_from: str = "queued"
    requests: int = 0
    worker_cpu_ms_per_delivery: float = 0.0
    worker_cpu_ms_per_request: float = 0.0
    handshakes: int = 0
    max_conns_per_host: int = 0
    peak_rss_mb: float = 0.0
    receiver_cores: float = 0.0
    other_cores: float = 0.0
    busy_cores: float = 0.0  # the whole machine
    p50_ms: float | None = None
    p99_ms: float | None = None
    posted_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def drain(name: str, args: argparse.Namespace, ca: Path, rec: TlsReceiver, healthy_only: bool) -> Row:
    row = Row(name, "healthy only" if healthy_only else "with broken")
    system, classes = start(name, ca, rec, args.workers, healthy_only)
    try:
        n_eps = len(classes)
        n_fast = classes.count("fast")
        per_ep = max(1, args.deliveries // (HOSTS * PER_HOST))  # the same per endpoint in both variants
        items = [(i, payload(k)) for k, i in enumerate(list(range(n_eps)) * per_ep)]
        row.deliveries, row.healthy_expected = len(items), n_fast * per_ep
        rec.reset()
        sampler, meter, rcpu0 = Sampler(system), CpuMeter(), rec.cpu_s()
        t0 = time.time()
        system.post(items)
        t_queued = time.time()
        at_queued = rec.stats()["classes"]["fast"]["unique"]
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            sampler.sample()
            st = rec.stats()
            if st["classes"]["fast"]["unique"] >= row.healthy_expected:
                break
            time.sleep(0.25)
        st = rec.stats()
        fast = st["classes"]["fast"]
        row.healthy_arrived = fast["unique"]
        end = fast["last"] if row.healthy_arrived >= row.healthy_expected else time.time()
        if at_queued <= row.healthy_expected / 2:
            row.healthy_per_s = (row.healthy_arrived - at_queued) / max(end - t_queued, 1e-6)
        else:
            row.healthy_per_s, row.rate_from = row.healthy_arrived / max(end - t0, 1e-6), "first submit"
        if row.healthy_arrived < row.healthy_expected:
            row.notes.append(f"only {row.healthy_arrived:,}/{row.healthy_expected:,} healthy within the box")
        cpu_ms = sampler.cpu_s() * 1000
        row.requests = sum(c["requests"] for c in st["classes"].values())
        row.worker_cpu_ms_per_delivery = cpu_ms / max(row.healthy_arrived, 1)
        row.worker_cpu_ms_per_request = cpu_ms / max(row.requests, 1)
        row.handshakes, row.max_conns_per_host = hosts_summary(st)
        row.peak_rss_mb = sampler.peak_rss_mb
        elapsed = max(time.time() - t0, 1e-6)
        row.receiver_cores = (rec.cpu_s() - rcpu0) / elapsed
        cores = meter.read()
        row.other_cores, row.busy_cores = cores["foreign_cores"], cores["busy_cores"]
    finally:
        system.stop()
    log(
        f"{name} {row.variant}: {row.healthy_per_s:,.0f} healthy/s ({row.healthy_arrived:,}/"
        f"{row.healthy_expected:,}), {row.worker_cpu_ms_per_delivery:.2f} ms CPU/delivery, "
        f"{row.handshakes:,} handshakes, max {row.max_conns_per_host} conns/host"
    )
    return row


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (ms); None when it falls on a missing (censored) delivery."""
    if not values:
        return None
    k = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return None if math.isinf(values[k]) else values[k] * 1000


def paced(name: str, args: argparse.Namespace, ca: Path, rec: TlsReceiver, rate: float) -> Row:
    row = Row(name, "paced", posted_per_s=rate)
    system, classes = start(name, ca, rec, args.workers, False)
    try:
        rec.reset(track_latency=True)
        sampler, meter = Sampler(system), CpuMeter()
        t0, n, tick = time.time(), 0, 0.05
        while (now := time.time()) < t0 + args.paced_s:
            due = int((now - t0) * rate) - n
            if due > 0:
                system.post([(k % len(classes), payload(k)) for k in range(n, n + due)])
                n += due
            sampler.sample()
            time.sleep(max(0.0, tick - (time.time() - now)))
        row.deliveries = n
        row.healthy_expected = sum(1 for k in range(n) if classes[k % len(classes)] == "fast")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and rec.stats()["classes"]["fast"]["unique"] < row.healthy_expected:
            sampler.sample()
            time.sleep(0.25)
        st = rec.stats(latency=True)
        lat = sorted(st["latency"]) + [math.inf] * max(0, row.healthy_expected - len(st["latency"]))
        row.healthy_arrived = len(st["latency"])
        row.p50_ms, row.p99_ms = _pct(lat, 0.50), _pct(lat, 0.99)
        row.handshakes, row.max_conns_per_host = hosts_summary(st)
        row.peak_rss_mb, row.other_cores = sampler.peak_rss_mb, meter.read()["foreign_cores"]
    finally:
        system.stop()
    log(
        f"{name} paced {rate:,.0f}/s: p50 {row.p50_ms or 0:.0f} ms, p99 {row.p99_ms or 0:.0f} ms "
        f"({row.healthy_arrived:,}/{row.healthy_expected:,} healthy)"
    )
    return row


def run(args: argparse.Namespace) -> list[Row]:
    cert_dir = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    rows: list[Row] = []
    rec: TlsReceiver | None = None
    try:
        files = make_certs(cert_dir, host_addresses(HOSTS))
        rec = TlsReceiver(cert_dir)
        for variant in (True, False):
            for name in args.systems:
                rows.append(drain(name, args, files.ca, rec, healthy_only=variant))
        broken = [r.healthy_per_s for r in rows if r.variant == "with broken" and r.healthy_per_s > 0]
        rate = args.rate or LOAD_SHARE * min(broken or [100.0]) * (
            HOSTS * PER_HOST
        ) / endpoint_classes().count("fast")
        for name in args.systems:
            rows.append(paced(name, args, files.ca, rec, rate))
    finally:
        if rec is not None:
            rec.stop()
        Proc.stop_all()
        shutil.rmtree(cert_dir, ignore_errors=True)
    return rows


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from bench.realtraffic_report import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4,000 deliveries, 10 s paced")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deliveries", type=int, default=0, help="phase 1 (default 20,000; 4,000 quick)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="phase 2 deliveries/s (default: 65 %% of the slower phase-1 rate)",
    )
    parser.add_argument("--systems", default="ours,arq")
    args = parser.parse_args(argv)
    args.deliveries = args.deliveries or (4000 if args.quick else 20000)
    args.paced_s = 10.0 if args.quick else 20.0
    args.drain_timeout = 60.0 if args.quick else 180.0
    args.systems = [s for s in args.systems.split(",") if s]
    signal.signal(signal.SIGTERM, _sigterm)
    command = "python -m bench.realtraffic" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    log(f"{command}: {', '.join(args.systems)}, {args.workers} workers each; logs in bench/out/logs/")
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    try:
        rows = run(args)
    except KeyboardInterrupt:
        log("interrupted: stopped everything we started")
        return 130
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    (OUT_DIR / "realtraffic.json").write_text(json.dumps(doc, default=vars, indent=2))
    print(report(rows, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
