"""Signatures per second on one core: HMAC-SHA256 (``v1``) against Ed25519 (``v1a``).

Signs the benchmark's delivery body with the platform's own code (webhooks.outbound.signing, as the
worker calls it: one header per delivery), for ``--seconds`` each, in this process. The rate is
per second of this process's CPU time (what one core does), and also per second of wall time;
on a shared machine the two differ, and "other load" says how many cores something else kept
busy meanwhile.
End-to-end deliveries/s to Ed25519 endpoints are left to the full benchmark run (``bench.run``).

    .venv/bin/python -m bench.signing [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

from bench.common import CpuMeter, envelope
from bench.systems import make_events
from webhooks.outbound.signing import ED25519, HMAC_SHA256, generate_key, parse_key, signature_header

REFERENCE_DELIVERIES_S = 5_000  # about what two workers deliver in bench.run (a)


def rate(scheme: str, body: bytes, seconds: float) -> tuple[float, float]:
    """Signatures per CPU second and per wall second."""
    keys = [parse_key(generate_key(scheme).stored)]
    done, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - t0) < seconds:
        for i in range(200):
            signature_header(keys, f"evt_{i}", 1700000000 + i, body)
        done += 200
    return done / (time.process_time() - cpu0), done / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    body = envelope("invoice.paid", make_events(1)[0].payload)
    print(f"signing a {len(body)}-byte body, one core, webhooks.outbound.signing.signature_header:")
    for scheme in (HMAC_SHA256, ED25519):
        meter = CpuMeter()
        per_cpu_s, per_wall_s = rate(scheme, body, args.seconds)
        other = meter.read()["foreign_cores"]
        share = REFERENCE_DELIVERIES_S / per_cpu_s
        print(
            f"  {scheme:12} {per_cpu_s:9,.0f} signatures per CPU second ({1e6 / per_cpu_s:5.1f} us each, "
            f"{share:.1%} of a core at {REFERENCE_DELIVERIES_S:,} deliveries/s); "
            f"{per_wall_s:,.0f}/s wall, other load {other:.2f} cores"
        )


if __name__ == "__main__":
    main()
