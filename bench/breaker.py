"""Endpoint health: what a 20-second outage of one endpoint costs with 300 events waiting.

The endpoint answers 500 for ``--outage-s`` (its URL points at the receiver's failing mode), while
300 events are posted to it; then it answers again (the URL is switched to the instant mode, as a
receiver coming back). Counted: attempts made during the outage (goal: at most 150, the circuit
breaker holds the rest without burning attempts) and the time from the end of the outage until
all 300 arrived (goal: within 100 s). Every setting is the product's default.

    python -m bench.breaker
"""

import argparse
import json
import time

from bench.common import Proc, wait_until
from bench.ours import OurPlatform
from bench.systems import Receiver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--outage-s", type=float, default=20.0)
    args = parser.parse_args()
    receiver = Receiver()
    ours = OurPlatform()
    try:
        ours.start(workers=2, timeout_s=15.0)
        (ep,) = ours.set_endpoints([receiver.url("fail", "outage")])
        receiver.reset()
        events = [{"event_type": "b.b", "payload": {"i": i}} for i in range(args.events)]
        t0 = time.time()
        ours._call("POST", "/v1/events/batch", ours.tenant_key, (202,), json={"events": events})
        time.sleep(max(0.0, args.outage_s - (time.time() - t0)))
        during = int(receiver.stats()["modes"].get("fail", {}).get("requests", 0))
        ours._call(
            "PATCH",
            f"/v1/endpoints/{ep.id}",
            ours.tenant_key,
            (200,),
            json={"url": receiver.url("instant", "outage")},
        )
        ended = time.time()
        wait_until(lambda: receiver.unique("instant") >= args.events, 300, "every event after the outage")
        took = time.time() - ended
        out = {
            "events": args.events,
            "outage_s": args.outage_s,
            "attempts_during": during,
            "all_arrived_after_s": round(took, 1),
        }
        print(json.dumps(out))
        attempts_ok = "met" if during <= 150 else "NOT met"
        arrival_ok = "met" if took <= 100 else "NOT met"
        print(
            f"breaker: {during} attempts during a {args.outage_s:g} s outage with {args.events} events "
            f"waiting (goal <= 150: {attempts_ok}); all arrived {took:.1f} s after it ended "
            f"(goal <= 100 s: {arrival_ok})"
        )
    finally:
        ours.stop()
        receiver.stop()
        Proc.stop_all()


if __name__ == "__main__":
    main()
