"""The fault scenario of tests/faults at a chosen size, with a printed report.

    python -m bench.faults --events 5000 --kills worker,scheduler,api,redis

starts a redis-server with AOF (or, with ``--sentinel``, a primary, a replica and
three sentinels), the API, workers and a scheduler as real processes, and a
verifying receiver; posts the events at a steady rate while the kills land at
random moments (SIGKILL; killed processes come back after a delay, like under
``webhooks up``); waits until nothing is pending, delivering or retrying; then
prints accepted, delivered, dead, duplicates, lost and the time to recover
after each kill. Exit status 0 when every check passed, 1 otherwise.

Kinds of kill: ``worker`` (the one with the most requests in flight, so mid-batch),
``lockholder`` (the worker whose embedded scheduler is active; use with
``--embedded-scheduler``), ``scheduler``, ``api`` (while a request is open),
``redis`` (restarted from the same AOF on the same port) and, with
``--sentinel``, ``primary``. See tests/faults/scenario.py for how each figure
is measured and docs/durability.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.faults.scenario import KINDS, Config, Report, run


def _latency(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low) / 1000, float(high or low) / 1000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=5000, help="events to post (default 5000)")
    p.add_argument("--rate", type=float, default=150.0, help="events per second (default 150)")
    p.add_argument(
        "--kills",
        default="worker,scheduler,api,redis",
        help=f"comma-separated kinds among {', '.join(KINDS)}, primary (default: worker,scheduler,api,redis)",
    )
    p.add_argument("--rounds", type=int, default=2, help="how many times each kind is killed (default 2)")
    p.add_argument("--in-order", action="store_true", help="kill in the order given instead of shuffled")
    p.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    p.add_argument(
        "--embedded-scheduler", action="store_true", help="workers embed a scheduler (no standalone)"
    )
    p.add_argument(
        "--lease-ttl", type=float, default=None, help="WEBHOOKS_LEASE_TTL_S (default: the shipped 10 s)"
    )
    p.add_argument("--appendfsync", default="always", choices=["always", "everysec", "no"])
    p.add_argument("--latency-ms", type=_latency, default=(0.02, 0.2), help="receiver latency range (20,200)")
    p.add_argument("--fail-every", type=int, default=5, help="first attempt of 1 event in N answers 503 on b")
    p.add_argument("--sentinel", action="store_true", help="Redis through Sentinel; the kill is 'primary'")
    p.add_argument(
        "--replication-delay-ms",
        type=float,
        default=0.0,
        help="with --sentinel: the replica lags this much and the kill is a machine crash (drops the lag)",
    )
    p.add_argument("--seed", type=int, default=None, help="replay a kill plan (printed in the report)")
    p.add_argument(
        "--settle-timeout", type=float, default=300.0, help="seconds to wait for the queue to drain"
    )
    p.add_argument("--workdir", type=Path, default=None, help="where logs and Redis files go (default: temp)")
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    return p


def to_json(report: Report) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, set):
            return len(value)  # delivery ids: only their number is interesting here
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items() if k != "held"}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    out = clean(dataclasses.asdict(report))
    out["problems"] = report.problems()
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kinds = [k.strip() for k in args.kills.split(",") if k.strip()]
    if args.sentinel:
        kinds = ["primary"]
    unknown = [k for k in kinds if k not in (*KINDS, "primary")]
    if unknown:
        print(f"unknown kind of kill: {', '.join(unknown)}", file=sys.stderr)
        return 2
    config = Config(
        events=args.events,
        rate=args.rate,
        kills=tuple(kinds * max(1, args.rounds)) if not args.sentinel else ("primary",),
        shuffle_kills=not args.in_order,
        seed=args.seed,
        workers=args.workers,
        embedded_scheduler=args.embedded_scheduler,
        standalone_scheduler=not args.embedded_scheduler,
        lease_ttl_s=args.lease_ttl,
        appendfsync=args.appendfsync,
        latency_s=args.latency_ms,
        fail_every=args.fail_every,
        sentinel=args.sentinel,
        replication_delay_s=args.replication_delay_ms / 1000,
        settle_timeout_s=args.settle_timeout,
        kill_window=(0.35, 0.45) if args.sentinel else (0.1, 0.8),
        concurrency=8,
        max_batch=50,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-faults-"))
    report = run(config, workdir)
    print(report.format())
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2) + "\n")
    if args.keep or args.workdir or report.problems():
        print(f"\nlogs and Redis files: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if not report.problems() else 1


if __name__ == "__main__":
    sys.exit(main())
