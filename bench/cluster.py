"""Deliveries per second on one Redis primary against a 3-primary Redis Cluster, on loopback.

For each layout: a private Redis (``--primaries 1``: one redis-server; ``3``: a Redis Cluster of
three primaries from ``tests/support/redis_cluster.py``, plus a plain Redis for RQ), the platform
through its CLI (``webhooks api``, ``webhooks scheduler``, N x ``webhooks worker
--no-scheduler``) and the bench receiver (``/instant``: 200 at once). Tenants with one endpoint
each get a backlog through the API before any worker starts; the clock runs from the workers'
start to the last delivery the receiver counts. Redis CPU per delivery is the growth of
``used_cpu_user + used_cpu_sys`` over every primary, divided by the deliveries; the busiest
primary's share of it is what bounds a layout once Redis, not the workers, is the bottleneck
(one primary saturates at 1 / its CPU per delivery).

Everything shares this machine's cores (``os.cpu_count()`` is printed): the workers, the
receiver and the primaries compete for them, so the result shows where the bottleneck is here,
not what separate machines would give.

    .venv/bin/python -m bench.cluster --primaries 1,3 --tenants 12 --events 1000 --workers 2
    .venv/bin/python -m bench.cluster --primaries 3 --reshard   # move slots while delivering

With ``--reshard`` (a cluster only), once deliveries run, ``webhooks cluster move-slots`` moves
every slot of the first primary to the second while the workers deliver (``--raw``: plain
``redis-cli --cluster reshard`` instead, which the platform does not survive: docs/scaling.md);
the run reports how long the move took, whether every event was still delivered (the receiver
counts unique deliveries) and how many deliveries arrived more than once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.cluster

from bench.common import Proc, RedisServer, free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parent.parent
STALL_S = 120  # the most a run may take to deliver everything
sys.path.insert(0, str(ROOT))
from tests.support.redis_cluster import RedisCluster  # noqa: E402 - the test harness, reused


def cpu_seconds(nodes: list[redis.Redis]) -> list[float]:
    """Each primary's CPU seconds so far (user + system)."""
    out = []
    for node in nodes:
        info = node.info("cpu")
        out.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
    return out


def reshard_all(cluster: RedisCluster, env: dict[str, str], done: dict[str, Any], raw: bool) -> None:
    """Move every slot of the first primary to the second: ``webhooks cluster move-slots`` (each
    slot's tenants paused while it moves), or with ``raw`` plain ``redis-cli --cluster reshard``."""
    nodes = sorted((n for n in cluster.topology() if n.is_primary), key=lambda n: n.port)
    source, target = nodes[0], nodes[1]
    slots = 0
    for spec in source.slots:
        lo, _, hi = spec.partition("-")
        slots += int(hi or lo) - int(lo) + 1
    if raw:
        argv = [
            *("redis-cli", "--cluster", "reshard", f"127.0.0.1:{source.port}"),
            *("--cluster-from", source.id, "--cluster-to", target.id, "--cluster-slots", str(slots)),
            "--cluster-yes",
        ]
    else:
        argv = [sys.executable, "-m", "cli", "cluster", "move-slots", "--json"]
        argv += ["--from", f"127.0.0.1:{source.port}", "--to", f"127.0.0.1:{target.port}"]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    seconds = round(time.monotonic() - started, 2)
    done.update(slots=slots, seconds=seconds, ok=out.returncode == 0, tail=(out.stdout + out.stderr)[-300:])


def run(
    primaries: int,
    tenants: int,
    events: int,
    workers: int,
    batch: int,
    reshard: bool = False,
    raw: bool = False,
) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKS_")}
    env.update(
        WEBHOOKS_ADMIN_TOKEN=token,
        WEBHOOKS_SECRET_KEY=secrets.token_urlsafe(32),
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
        WEBHOOKS_LOG_LEVEL="WARNING",
        WEBHOOKS_TENANT_RATE_LIMIT_PER_S="1000000",
        PYTHONPATH=str(ROOT),
    )
    cluster: RedisCluster | None = None
    plain = RedisServer(f"p{primaries}")
    procs: list[Proc] = []
    try:
        if primaries == 1:
            env["WEBHOOKS_REDIS_URL"] = plain.url
            nodes = [redis.Redis.from_url(plain.url)]
        else:
            cluster = RedisCluster(primaries=primaries).start()
            env["WEBHOOKS_REDIS_CLUSTER_NODES"] = cluster.nodes_setting
            env["WEBHOOKS_RQ_REDIS_URL"] = plain.url
            nodes = [cluster.node_client(p) for p in cluster.primary_ports()]
        rport, aport = free_port(), free_port()
        env["WEBHOOKS_API_PORT"] = str(aport)
        cli = [sys.executable, "-m", "cli"]
        procs.append(
            Proc("receiver", [sys.executable, "-m", "bench.receiver", "--port", str(rport)], env=env)
        )
        procs.append(Proc("api", [*cli, "api"], env=env))
        api = httpx.Client(base_url=f"http://127.0.0.1:{aport}", timeout=60)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{rport}/stats"), 30, "the receiver", procs=procs)
        wait_until(lambda: api.get("/readyz").status_code == 200, 60, "the API", procs=procs)
        admin = {"Authorization": f"Bearer {token}"}
        for t in range(tenants):
            made = api.post("/v1/tenants", json={"name": f"t{t}"}, headers=admin).json()
            auth = {"Authorization": f"Bearer {made['api_key']}"}
            ep = {"url": f"http://127.0.0.1:{rport}/instant/t{t}", "max_in_flight": 1000}
            assert api.post("/v1/endpoints", json=ep, headers=auth).status_code == 201
            for start in range(0, events, batch):
                body = {
                    "events": [
                        {"event_type": "b.x", "payload": {"i": i}} for i in range(start, start + batch)
                    ]
                }
                resp = api.post("/v1/events/batch", json=body, headers=auth)
                assert resp.status_code == 202, resp.text
        total = tenants * events

        def delivered(field: str = "unique") -> int:
            stats = httpx.get(f"http://127.0.0.1:{rport}/stats", timeout=5).json()
            return sum(int(e[field]) for e in stats["endpoints"].values())

        procs.append(Proc("scheduler", [*cli, "scheduler"], env=env))
        for i in range(workers):
            procs.append(Proc(f"worker-{i}", [*cli, "worker", "--no-scheduler"], env=env))
        # The clock starts at the first delivery, so the processes' start-up is not counted.
        wait_until(lambda: delivered() > 0, 120, "the first delivery", interval=0.02, procs=procs)
        cpu_before, started, first = cpu_seconds(nodes), time.monotonic(), delivered()
        moved: dict[str, Any] = {}
        mover = None
        if reshard and cluster is not None:
            mover = threading.Thread(target=reshard_all, args=(cluster, env, moved, raw), daemon=True)
            mover.start()
        try:
            wait_until(lambda: delivered() >= total, STALL_S, f"{total} deliveries", 0.1, procs=procs)
        except TimeoutError:
            if mover is None:
                raise
            mover.join()
            print(f"  STALLED: {delivered()} of {total} after {STALL_S} s; reshard: {moved}", flush=True)
            raise
        elapsed = time.monotonic() - started
        if mover is not None:
            mover.join()
        per_primary = [after - before for after, before in zip(cpu_seconds(nodes), cpu_before, strict=True)]
        cpu = sum(per_primary)
        total -= first
        api.close()
        return {
            "primaries": primaries,
            "deliveries": total,
            "seconds": round(elapsed, 2),
            "deliveries_per_s": round(total / elapsed),
            "redis_cpu_us_per_delivery": round(cpu / total * 1e6, 1),
            "redis_cpu_share": round(cpu / elapsed, 2),
            # what bounds a layout once Redis is the bottleneck: the busiest primary's work per delivery
            "busiest_primary_cpu_us_per_delivery": round(max(per_primary) / total * 1e6, 1),
            "requests": delivered("requests"),
            "unique": delivered(),
            **({"reshard": moved} if moved else {}),
        }
    finally:
        for p in reversed(procs):
            p.stop()
        if cluster is not None:
            cluster.stop()
        plain.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--primaries", default="1,3", help="layouts to run, e.g. 1,3 (3+ is a cluster)")
    ap.add_argument("--tenants", type=int, default=12)
    ap.add_argument("--events", type=int, default=1000, help="events per tenant (one endpoint each)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--reshard", action="store_true", help="move a primary's slots while delivering")
    ap.add_argument("--raw", action="store_true", help="with --reshard: plain redis-cli, no tenant pauses")
    args = ap.parse_args(argv)
    print(f"cores: {os.cpu_count()} (shared by the primaries, workers, API and receiver)")
    for n in (int(x) for x in args.primaries.split(",")):
        r = run(n, args.tenants, args.events, args.workers, args.batch, args.reshard and n > 1, args.raw)
        layout = "1 primary" if n == 1 else f"{n} primaries"
        print(
            f"{layout}: {r['deliveries']} deliveries in {r['seconds']}s = {r['deliveries_per_s']}/s; "
            f"Redis CPU {r['redis_cpu_us_per_delivery']} us per delivery "
            f"({r['redis_cpu_share']} cores busy), the busiest primary "
            f"{r['busiest_primary_cpu_us_per_delivery']} us per delivery",
            flush=True,
        )
        print(f"  received {r['requests']} requests for {r['unique']} unique deliveries", flush=True)
        if "reshard" in r:
            m = r["reshard"]
            print(
                f"  reshard: {m['slots']} slots moved in {m['seconds']}s while delivering "
                f"({'ok: ' + m['tail'].strip() if m['ok'] else 'FAILED: ' + m['tail']})",
                flush=True,
            )


if __name__ == "__main__":
    main()
