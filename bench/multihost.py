"""Deliveries/s with 1, 2, 3… worker hosts: the measurement of tests/e2e/test_multihost.py, printed.

    sudo .venv/bin/python -m bench.multihost [--hosts 3] [--concurrency 10] [--delay-ms 200] [--rounds 1]

builds a lab of network namespaces on this machine (tests/support/netns.py: Redis on one host,
the API and the scheduler on another, one worker per remaining host, the receiver on the root
leg), then adds worker hosts one at a time and measures how fast each backlog drains
(tests/support/multihost.py). Each worker runs at most ``--concurrency`` requests at once and the
receiver answers in ``--delay-ms``, so a host's bound is concurrency / delay whatever the CPU.
Needs root and iproute2; everything it starts is removed when it ends, whatever happens.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from tests.support.multihost import Load, MultiHost, run_throughput
from tests.support.netns import NetnsLab, unavailable_reason
from tests.support.paced_receiver import PacedReceiver


def measure(hosts: int, concurrency: int, delay_s: float, log_dir: Path) -> dict[int, float]:
    lab = NetnsLab(2 + hosts, root_leg=True)
    assert lab.root_address is not None
    receiver = PacedReceiver(lab.root_address, delay_s)
    try:
        lab.start()
        receiver.start()
        platform = MultiHost(lab, log_dir, concurrency).start()
        load = Load(platform.api_url, receiver.url())
        try:
            return run_throughput(platform, receiver, load)
        finally:
            load.close()
    finally:
        receiver.stop()
        lab.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.multihost", description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=3, help="worker hosts, added one at a time (default 3)")
    p.add_argument("--concurrency", type=int, default=10, help="WEBHOOKS_WORKER_CONCURRENCY (default 10)")
    p.add_argument("--delay-ms", type=float, default=200.0, help="the receiver's answer time (default 200)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the whole measurement (default 1)")
    args = p.parse_args(argv)
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot build the lab here: {reason}", file=sys.stderr)
        return 2
    bound = args.concurrency / (args.delay_ms / 1000)
    print(
        f"worker concurrency {args.concurrency}, receiver {args.delay_ms:.0f} ms:",
        f"at most {bound:.0f}/s per host",
    )
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="multihost-") as tmp:
            rates = measure(args.hosts, args.concurrency, args.delay_ms / 1000, Path(tmp))
        one = rates[1]
        cells = ", ".join(f"{n} host(s) {rate:.0f}/s ({rate / one:.2f}x)" for n, rate in rates.items())
        print(f"round {round_}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
