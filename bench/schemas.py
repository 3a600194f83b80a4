"""Batch ingest with and without JSON Schema checks, in the same run: events/s through the HTTP API.

One `webhooks api` (no workers, nothing else competing) on a private Redis, one endpoint, and
`POST /v1/events/batch` of 1,000 events with 4 in flight, as scenario (d) of `bench.run` posts
them. The rounds alternate between an event type that is not in the catalogue (no check) and
one whose catalogue entry has the schema below, then the tenant's strict mode on; each
round reports its own rate, and events per CPU second of the API process (what one core of API
does, less sensitive to a shared machine than the wall-clock rate). The goal is 20,000 events/s
with schemas on. The machine may be shared: "other load" says how many cores something else
kept busy meanwhile.

    .venv/bin/python -m bench.schemas [--batches 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import time

import psutil

from bench.common import CpuMeter, Proc
from bench.loadgen import run_load
from bench.ours import OurPlatform
from bench.systems import make_events
from webhooks.intake.event_types import catalogue

SCHEMA = {
    "type": "object",
    "required": ["n", "object", "customer", "amount_due", "currency", "lines"],
    "properties": {
        "n": {"type": "integer", "minimum": 0},
        "sent_at": {"type": "number"},
        "object": {"const": "invoice"},
        "customer": {"type": "string", "pattern": "^cus_[0-9a-z]+$"},
        "amount_due": {"type": "integer", "minimum": 0},
        "currency": {"enum": ["usd", "eur", "gbp"]},
        "lines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            },
        },
    },
    "additionalProperties": False,
}


def batch_body(event_type: str) -> bytes:
    events = [{"event_type": event_type, "payload": e.payload} for e in make_events(1000)]
    return json.dumps({"events": events}).encode()


def check_rate(seconds: float = 1.0) -> float:
    """Payloads checked per second by the catalogue alone, in this process (one core)."""
    cat = catalogue({"invoice.checked": json.dumps({"name": "invoice.checked", "schema": SCHEMA})}, None)
    payloads = [e.payload for e in make_events(1000)]
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for p in payloads:
            cat.check("invoice.checked", p)
        done += len(payloads)
    return done / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches of 1,000 per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--api-workers", type=int, default=1, help="API processes (WEBHOOKS_API_WORKERS; default 1)"
    )
    args = parser.parse_args(argv)
    ours = OurPlatform()
    if args.api_workers > 1:
        ours.extra_env["WEBHOOKS_API_WORKERS"] = str(args.api_workers)
    try:
        ours.start(workers=0, timeout_s=15, scheduler=False)
        ours.set_endpoints(["http://127.0.0.1:9/never-called"])  # no worker runs: nothing is sent
        key = ours.tenant_key
        ours._call("POST", "/v1/event-types", key, (201,), json={"name": "invoice.checked", "schema": SCHEMA})
        url = f"{ours.base}/v1/events/batch"
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        bodies = {"no schema": batch_body("invoice.free"), "schema": batch_body("invoice.checked")}
        run_load(url, headers, lambda i: bodies["schema"], 5, 4, 60)  # warm-up (compiles, caches)
        api = [psutil.Process(pid) for pid in ours.api_pids()]  # uvicorn's processes, all of them

        def api_cpu_s() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in api)

        results: dict[str, list[float]] = {name: [] for name in [*bodies, "schema + strict"]}
        per_cpu: dict[str, list[float]] = {name: [] for name in results}
        for _ in range(args.rounds):
            for name, body in [*bodies.items(), ("schema + strict", bodies["schema"])]:
                strict = name == "schema + strict"
                ours._call(
                    "PATCH", f"/v1/tenants/{ours.tenant_id}", key, (200,), json={"strict_event_types": strict}
                )
                meter, api_cpu0 = CpuMeter(), api_cpu_s()
                out = run_load(url, headers, lambda i, b=body: b, args.batches, 4, 120)
                load, used_s = meter.read(), api_cpu_s() - api_cpu0
                if out.errors:
                    raise SystemExit(f"{name}: {out.errors} failed batches, first: {out.first_error}")
                results[name].append(out.rate * 1000)
                per_cpu[name].append(out.ok * 1000 / used_s)
                print(
                    f"  {name:16} {out.rate * 1000:9,.0f} events/s, "
                    f"{per_cpu[name][-1]:9,.0f} per API CPU second   "
                    f"(other load {load['foreign_cores']:.2f} cores)"
                )
        print(
            f"batch ingest, 1,000 events per request, 4 in flight, {args.api_workers} API process(es) "
            "(machine shared: see other load):"
        )
        for name, rates in results.items():
            cpu = sorted(per_cpu[name])[len(per_cpu[name]) // 2]
            print(
                f"  {name:16} best {max(rates):9,.0f} events/s   mean {sum(rates) / len(rates):9,.0f}"
                f"   median {cpu:9,.0f} events per API CPU second"
            )
        print(f"schema check alone (jsonschema-rs, this process): {check_rate():,.0f} payloads/s on one core")
    finally:
        ours.stop()
        Proc.stop_all()


if __name__ == "__main__":
    main()
