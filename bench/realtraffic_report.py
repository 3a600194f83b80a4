"""The table and the goal lines of bench/realtraffic.py (ratios ours / arq from the same run).

Per system: ``healthy/s`` with the broken endpoints and without (phase 1) and their ratio;
``CPU/delivery`` = worker CPU (every worker process, psutil) over the healthy deliveries of the
healthy-only run, ``CPU/request`` the same over every request the receiver saw in the run with broken
endpoints (retries of the failing ones included); ``handshakes`` = TLS connections the receiver
accepted on the 40 hosts in the run with broken endpoints; ``conns/host`` = the most connections
open at once to one host over all runs; ``p50``/``p99`` from phase 2; ``RSS`` = peak RSS of one
worker process over all runs; ``other load`` = the worst cores kept busy by processes this run did
not start. Goals are printed as met or missed, never asserted.
"""

from __future__ import annotations

from typing import Any


def _ms(v: float | None) -> str:
    return "censored" if v is None else f"{v:,.0f} ms"


def _row(rows: list[Any], system: str, variant: str) -> Any:
    for r in rows:
        if r.system == system and r.variant == variant:
            return r
    return None


def summary(rows: list[Any], system: str) -> dict[str, Any]:
    broken, healthy, paced = (_row(rows, system, v) for v in ("with broken", "healthy only", "paced"))
    mine = [r for r in rows if r.system == system]
    out: dict[str, Any] = {"system": system}
    if broken:
        out |= {
            "healthy_per_s": broken.healthy_per_s,
            "cpu_ms_per_request": broken.worker_cpu_ms_per_request,
            "handshakes": broken.handshakes,
            "rate_from": broken.rate_from,
            "notes": broken.notes,
        }
    if healthy:
        out |= {
            "healthy_only_per_s": healthy.healthy_per_s,
            "cpu_ms_per_delivery": healthy.worker_cpu_ms_per_delivery,
        }
    if broken and healthy and healthy.healthy_per_s:
        out["with_without"] = broken.healthy_per_s / healthy.healthy_per_s
    if paced:
        out |= {"p50_ms": paced.p50_ms, "p99_ms": paced.p99_ms, "posted_per_s": paced.posted_per_s}
    out["max_conns_per_host"] = max((r.max_conns_per_host for r in mine), default=0)
    out["peak_rss_mb"] = max((r.peak_rss_mb for r in mine), default=0.0)
    out["other_cores"] = max((r.other_cores for r in mine), default=0.0)
    out["busy_cores"] = max((r.busy_cores for r in mine), default=0.0)
    out["receiver_cores"] = max((r.receiver_cores for r in mine), default=0.0)
    return out


def _goal(label: str, met: bool | None, detail: str) -> str:
    verdict = "n/a" if met is None else ("goal met" if met else "goal missed")
    return f"  {label:<46} {detail:<40} {verdict}"


def goals(ours: dict[str, Any], arq: dict[str, Any], workers: int) -> list[str]:
    def ratio(key: str) -> float | None:
        a, b = ours.get(key), arq.get(key)
        return a / b if a is not None and b else None

    lines = []
    r = ratio("healthy_per_s")
    lines.append(
        _goal("healthy deliveries/s ours/arq >= 3x", None if r is None else r >= 3, f"{r or 0:.2f}x")
    )
    r = ratio("cpu_ms_per_delivery")
    lines.append(
        _goal("worker CPU per delivery ours/arq <= 0.35x", None if r is None else r <= 0.35, f"{r or 0:.2f}x")
    )
    a, b = ours.get("handshakes"), arq.get("handshakes")
    met = None if a is None or b is None else a <= b
    lines.append(_goal("TLS handshakes ours <= arq", met, f"{a} vs {b}"))
    c = ours.get("max_conns_per_host")
    lines.append(
        _goal(f"connections per host, {workers} workers, ours <= 16", None if c is None else c <= 16, f"{c}")
    )
    w = ours.get("with_without")
    lines.append(
        _goal("ours healthy/s with broken / without >= 0.8", None if w is None else w >= 0.8, f"{w or 0:.2f}")
    )
    return lines


def report(rows: list[Any], workers: int) -> str:
    systems = list(dict.fromkeys(r.system for r in rows))
    sums = {s: summary(rows, s) for s in systems}
    head = (
        f"{'system':<7} {'healthy/s':>10} {'w/o broken':>10} {'with/w/o':>8} {'CPU/deliv':>10} "
        f"{'CPU/req':>8} "
        f"{'handshakes':>10} {'conns/host':>10} {'p50':>9} {'p99':>9} {'RSS/proc':>9} {'other load':>10}"
    )
    lines = [
        "Real traffic: 40 TLS hosts x 10 endpoints (82% 20-150 ms, 10% 1-2 s, 5% 500, 3% no answer), "
        f"timeout 5 s, retries 2,4,8,16 s, {workers} workers each",
        head,
        "-" * len(head),
    ]
    for s in systems:
        d = sums[s]
        lines.append(
            f"{s:<7} {d.get('healthy_per_s', 0):>10,.0f} {d.get('healthy_only_per_s', 0):>10,.0f} "
            f"{d.get('with_without', 0):>8.2f} {d.get('cpu_ms_per_delivery', 0):>7.2f} ms "
            f"{d.get('cpu_ms_per_request', 0):>5.2f} ms {d.get('handshakes', 0):>10,} "
            f"{d['max_conns_per_host']:>10} "
            f"{_ms(d.get('p50_ms')):>9} {_ms(d.get('p99_ms')):>9} {d['peak_rss_mb']:>6.0f} MB "
            f"{d['other_cores']:>6.2f} cores"
        )
    for s in systems:
        d = sums[s]
        extra = f"; {'; '.join(d['notes'])}" if d.get("notes") else ""
        lines.append(
            f"  {s}: phase 2 posted {d.get('posted_per_s', 0):,.0f} deliveries/s; receiver up to "
            f"{d['receiver_cores']:.2f} cores, whole machine up to {d['busy_cores']:.2f} busy in phase 1; "
            f"healthy/s counted from {d.get('rate_from', '?')}{extra}"
        )
    if "ours" in sums and "arq" in sums:
        lines.append("Goals (ours vs arq, same run):")
        lines.extend(goals(sums["ours"], sums["arq"], workers))
    return "\n".join(lines)
