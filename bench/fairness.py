"""(f) noisy neighbour: a quiet tenant's latency with and without another tenant's backlog.

Tenant A posts a backlog (default 100,000 events) to its endpoint that answers in 50 ms; tenant B
then posts single events, one every 100 ms, to an instant endpoint. B's latency (post to arrival at
the receiver) is measured first with no backlog, then behind A's. Goal: B's p99 with the backlog no
more than 2x its p99 without.

    python -m bench.fairness                      # 100,000-event backlog, 200 quiet events
    python -m bench.fairness --backlog 20000 --quiet 100

Same stack as bench.run: a private redis-server, ``webhooks api``, 2 workers, the scheduler, the
benchmark receiver; every setting the product's default but the tenant API quota (off).
"""

import argparse
import json
import statistics
import time
import uuid
from typing import Any

from bench.common import Proc, wait_until
from bench.ours import OurPlatform
from bench.systems import Receiver

SLOW_MS = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def new_tenant(ours: OurPlatform, url: str) -> str:
    t = ours._call(
        "POST", "/v1/tenants", ours.admin_token, (201,), json={"name": f"t-{uuid.uuid4().hex[:6]}"}
    )
    ours._call("POST", "/v1/endpoints", t["api_key"], (201,), json={"url": url})
    return str(t["api_key"])


def quiet_latencies(ours: OurPlatform, receiver: Receiver, key: str, n: int) -> list[float]:
    """Post ``n`` single events 100 ms apart; the receiver measures each one's arrival less its
    ``sent_at`` (stamped just before the post); reset the receiver before."""
    for _ in range(n):
        t0 = time.time()
        ours._call("POST", "/v1/events", key, (202,), json={"event_type": "q.q", "payload": {"sent_at": t0}})
        time.sleep(max(0.0, 0.1 - (time.time() - t0)))
    wait_until(lambda: receiver.unique("instant") >= n, 300, f"{n} quiet deliveries")
    return [float(x) for x in receiver.stats(latency=True)["latency"]["instant"]]


def run(backlog: int, quiet: int) -> dict[str, Any]:
    receiver = Receiver()
    ours = OurPlatform()
    try:
        ours.start(workers=2, timeout_s=15.0)
        noisy = new_tenant(ours, receiver.url("slow", "noisy", ms=SLOW_MS))
        calm = new_tenant(ours, receiver.url("instant", "quiet"))
        receiver.reset(track_latency=True)
        quiet_latencies(ours, receiver, calm, 20)  # warm-up: workers up and draining
        receiver.reset(track_latency=True)
        alone = quiet_latencies(ours, receiver, calm, quiet)
        receiver.reset(track_latency=True)
        events = [{"event_type": "n.n", "payload": {"i": i}} for i in range(backlog)]
        for start in range(0, backlog, 1000):
            ours._call(
                "POST", "/v1/events/batch", noisy, (202,), json={"events": events[start : start + 1000]}
            )
        behind = quiet_latencies(ours, receiver, calm, quiet)
        left = backlog - receiver.unique("slow")
        out = {
            "backlog": backlog,
            "backlog_left_when_done": left,
            "alone_p50_ms": round(statistics.median(alone) * 1000, 1),
            "alone_p99_ms": round(percentile(alone, 0.99) * 1000, 1),
            "behind_p50_ms": round(statistics.median(behind) * 1000, 1),
            "behind_p99_ms": round(percentile(behind, 0.99) * 1000, 1),
        }
        out["p99_ratio"] = round(out["behind_p99_ms"] / out["alone_p99_ms"], 2)
        return out
    finally:
        ours.stop()
        receiver.stop()
        Proc.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--quiet", type=int, default=200)
    args = parser.parse_args()
    result = run(args.backlog, args.quiet)
    print(json.dumps(result))
    verdict = "met" if result["p99_ratio"] <= 2 else "NOT met"
    print(
        f"(f) noisy neighbour: quiet tenant p50/p99 {result['alone_p50_ms']}/{result['alone_p99_ms']} ms "
        "alone, "
        f"{result['behind_p50_ms']}/{result['behind_p99_ms']} ms behind a {args.backlog:,}-event backlog "
        f"({result['backlog_left_when_done']:,} still queued when the quiet run ended): "
        f"p99 ratio {result['p99_ratio']} (goal <= 2: {verdict})"
    )


if __name__ == "__main__":
    main()
