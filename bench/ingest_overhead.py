"""Single-event ingest cost straight through the ASGI app (no HTTP server, no client): how much
the API's own code costs per ``POST /v1/events``, e.g. to see what instrumentation adds.

It starts a private redis-server, builds the real app (lifespan included), creates a tenant
and one endpoint, then posts events one at a time (``--concurrency 1``: latency per request) and
``--concurrency`` at a time (throughput with group commits), several rounds, and prints the
best round of each. Run: ``python -m bench.ingest_overhead [--events 3000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from api.app import ApiConfig, create_app
from bench.common import RedisServer
from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime.connection import RedisTarget
from webhooks.stores.store import Policy

ADMIN = "bench-admin-token-0123456789abcdef"


async def call(app: Any, method: str, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    done = False

    async def receive() -> dict[str, Any]:
        nonlocal done
        if done:
            await asyncio.sleep(3600)
        done = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def run(events: int, rounds: int, concurrency: int) -> None:
    redis = RedisServer("ingest-overhead")
    try:
        config = ApiConfig(
            RedisTarget(redis.url),
            SecretBox(None),
            Policy(allow_private_targets=True, tenant_rate_per_s=0),
            ADMIN,
        )
        app = create_app(config)
        fastapi = app.app
        async with fastapi.router.lifespan_context(fastapi):
            status, out = await call(app, "POST", "/v1/tenants", b'{"name": "bench"}', ADMIN)
            assert status == 201, out
            key = orjson.loads(out)["api_key"]
            status, out = await call(app, "POST", "/v1/endpoints", b'{"url": "http://127.0.0.1:9/h"}', key)
            assert status == 201, out
            body = orjson.dumps({"event_type": "bench.event", "payload": {"n": 1, "text": "x" * 200}})

            async def post_many(n: int) -> None:
                for _ in range(n):
                    status, out = await call(app, "POST", "/v1/events", body, key)
                    assert status == 202, out

            await post_many(200)  # warm up
            n_conc = events // concurrency * concurrency
            best = {"seq wall": 1e9, "seq cpu": 1e9, "conc wall": 1e9, "conc cpu": 1e9}
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                await post_many(events)
                best["seq wall"] = min(best["seq wall"], (time.perf_counter() - t0) / events)
                best["seq cpu"] = min(best["seq cpu"], (time.process_time() - c0) / events)
                t0, c0 = time.perf_counter(), time.process_time()
                await asyncio.gather(*(post_many(events // concurrency) for _ in range(concurrency)))
                best["conc wall"] = min(best["conc wall"], (time.perf_counter() - t0) / n_conc)
                best["conc cpu"] = min(best["conc cpu"], (time.process_time() - c0) / n_conc)
            # CPU time is this process's own (the API's code), so it is less disturbed by other
            # load on the machine than wall time; Redis's time is in the wall time only.
            seq_wall, seq_cpu = best["seq wall"] * 1e6, best["seq cpu"] * 1e6
            print(f"sequential: {seq_wall:.0f} us wall, {seq_cpu:.0f} us CPU per event")
            print(
                f"{concurrency} concurrent: {best['conc wall'] * 1e6:.0f} us wall, "
                f"{best['conc cpu'] * 1e6:.0f} us CPU per event ({1 / best['conc wall']:.0f}/s)"
            )
    finally:
        redis.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(run(args.events, args.rounds, args.concurrency))


if __name__ == "__main__":
    main()
