"""Redis memory per settled event, by payload size, on the real platform (issue: bounded memory).

For each payload size: a fresh private redis-server, ``webhooks api`` + 2 workers + scheduler, one
endpoint on the benchmark receiver (instant mode), N events posted in batches and delivered. The
figure is Redis' ``used_memory`` after everything settled, less ``used_memory`` before the first
event, divided by N: what history costs per event (event, delivery, attempt, indexes).

    python -m bench.memory                 # 50, 500 and 5,000-byte payloads
    python -m bench.memory --sizes 50 --events 20000

It also prints the sizing table of docs/memory.md: events per GB and how long a Redis of a given
size keeps history at a given event rate (with the default 70 % high watermark).
"""

import argparse
import json
import time
from typing import Any

import redis

from bench.common import Proc, wait_until
from bench.ours import OurPlatform
from bench.systems import Event, Receiver

HIGH_WATERMARK = 0.7


def settled(r: "redis.Redis", tenant_id: str, n: int) -> bool:
    from webhooks import keys

    stats = r.hgetall(keys.stats(tenant_id))
    return int(stats.get("attempts_succeeded", 0)) >= n and r.zcard(keys.leases(tenant_id)) == 0


def measure(size: int, n: int, receiver: Receiver) -> dict[str, Any]:
    ours = OurPlatform()
    try:
        ours.start(workers=2, timeout_s=15.0)
        assert ours.redis is not None
        r = redis.Redis.from_url(ours.redis.url, decode_responses=True)
        ours.set_endpoints([receiver.url("instant", "mem")])
        filler = "x" * max(0, size - len('{"n":000000,"pad":""}'))
        events = [Event(id=f"m{i}", payload={"n": i, "pad": filler}) for i in range(n)]
        time.sleep(0.5)  # let the processes finish their start-up writes
        before = int(r.info("memory")["used_memory"])
        t0 = time.time()
        ours.submit(events)
        wait_until(
            lambda: settled(r, ours.tenant_id, n), 600, f"{n} deliveries settled", procs=ours.all_procs()
        )
        took_s = time.time() - t0
        time.sleep(1.0)
        after = int(r.info("memory")["used_memory"])
        r.close()
        per_event = (after - before) / n
        return {
            "payload_bytes": size,
            "events": n,
            "bytes_per_event": round(per_event),
            "seconds": round(took_s, 1),
        }
    finally:
        ours.stop()


def sizing(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| payload | bytes per settled event | events per GB | 1 GB keeps, at 100 events/s | at 1,000/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        per_gb = int(HIGH_WATERMARK * 2**30 / row["bytes_per_event"])
        lines.append(
            f"| {row['payload_bytes']:,} B | {row['bytes_per_event']:,} | {per_gb:,} | "
            f"{per_gb / 100 / 3600:.1f} h | {per_gb / 1000 / 3600:.1f} h |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50,500,5000")
    parser.add_argument("--events", type=int, default=20000, help="events per size (5,000-byte: a quarter)")
    args = parser.parse_args()
    receiver = Receiver()
    rows = []
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            n = args.events if size < 5000 else max(1000, args.events // 4)
            row = measure(size, n, receiver)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        receiver.stop()
        Proc.stop_all()
    print("\n".join(sizing(rows)))


if __name__ == "__main__":
    main()
