"""The tables for (g) one hot endpoint and (h) recovery after a worker SIGKILL (see bench/README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.run import Results

G_ORDER = ("ours", "rq-simple", "celery", "celery-threads", "arq", "temporal", "ceiling")
H_ORDER = ("ours", "temporal", "arq", "celery-threads", "celery", "rq-simple", "rq-fork")


def _secs(v: float | None) -> str:
    return "not within the window" if v is None else f"{v:.1f}s"


def tables(res: Results) -> list[str]:
    from bench.report import _failed, _num, _rows, ours_over, result_note

    cfg = res.config
    lines: list[str] = []
    block = res.scenarios.get("g")
    if block:
        lines += [
            "",
            f"(g) one hot endpoint: {cfg['total']:,} deliveries to ONE instant endpoint against the same "
            f"to {cfg['fanout']} (ten-endpoint runs are (a)'s when (a) ran)",
        ]
        ours = block.get("ours", {})
        rows, fails = [], []
        for name in G_ORDER:
            r = block.get(name)
            if r is None:
                continue
            one, ten = r.get("one", {}), r.get("ten", {})
            failed = [x for x in (one, ten) if "error" in x]
            if failed:
                fails.append(_failed(name, failed[0]))
                continue
            mine = name == "ours"
            rows.append(
                [
                    name,
                    _num(one["rate"]),
                    _num(ten["rate"]),
                    f"{r['one_over_ten']:.2f}" if r.get("one_over_ten") else "n/a",
                    "" if mine else ours_over(ours.get("one", {}).get("rate"), one["rate"]),
                    "" if mine else ours_over(ours.get("ten", {}).get("rate"), ten["rate"]),
                    f"{result_note(one)}; {result_note(ten)}",
                ]
            )
        lines += _rows(
            [
                "system",
                "one endpoint/s",
                "ten endpoints/s",
                "one / ten (queued)",
                "ours / (one)",
                "ours / (ten)",
                "result",
            ],
            rows,
        )
        lines += fails
    block = res.scenarios.get("h")
    if block:
        lines += [
            "",
            f"(h) recovery: {cfg['h_rate']:g} events/s x {cfg['h_fanout']} endpoints answering in "
            f"{cfg['h_ms']} ms, one of {cfg['workers']} workers SIGKILLed {cfg['h_kill_at_s']:g}s in "
            f"(not restarted); window {cfg['h_window_s']:g}s after the kill",
        ]
        rows, fails = [], []
        for name in H_ORDER:
            r: dict[str, Any] | None = block.get(name)
            if r is None:
                continue
            if "error" in r:
                fails.append(_failed(name, r))
                continue
            rows.append(
                [
                    name,
                    str(r["held"]),
                    f"{r['held_resent']}/{r['held']}",
                    _secs(r["recovery_s"]),
                    _secs(r["first_after_kill_s"]),
                    f"{r['delivered']:,}/{r['expected']:,}",
                    str(r["duplicates"]),
                ]
            )
        lines += _rows(
            [
                "system",
                "held by the dead worker",
                "re-sent",
                "recovered after",
                "next delivery after",
                "delivered",
                "duplicates",
            ],
            rows,
        )
        lines += fails
        lines.append(
            "  held = requests in flight on the killed worker (the receiver saw their client hang up); "
            "recovered = from the kill until the last of them was re-sent and every delivery posted "
            "before the kill had arrived"
        )
    return lines


def chart_g(ax: Any, res: Results) -> None:
    block = res.scenarios.get("g", {})
    names = [n for n in G_ORDER if "rate" in block.get(n, {}).get("one", {}) and "rate" in block[n]["ten"]]
    ax.set_title("(g) one hot endpoint vs ten endpoints", fontsize=10)
    if not names:
        ax.set_axis_off()
        return
    x = list(range(len(names)))
    one = [block[n]["one"]["rate"] for n in names]
    ten = [block[n]["ten"]["rate"] for n in names]
    ax.bar([i - 0.2 for i in x], one, width=0.4, label="one endpoint", color="#fa5252")
    ax.bar([i + 0.2 for i in x], ten, width=0.4, label="ten endpoints", color="#74c0fc")
    for i in x:
        for dx, v in ((-0.2, one[i]), (0.2, ten[i])):
            ax.annotate(f"{v:,.0f}", (i + dx, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, fontsize=8, rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("deliveries/s (log)")
    ax.legend(fontsize=8)


def chart_h(ax: Any, res: Results) -> None:
    block = res.scenarios.get("h", {})
    names = [n for n in H_ORDER if "held" in block.get(n, {})]
    ax.set_title("(h) recovery after a worker SIGKILL", fontsize=10)
    if not names:
        ax.set_axis_off()
        return
    window = float(res.config.get("h_window_s", 45))
    values = [block[n]["recovery_s"] if block[n]["recovery_s"] is not None else window for n in names]
    rects = ax.bar(names, values, color=["#2b8a3e" if n == "ours" else "#4dabf7" for n in names])
    for n, r, v in zip(names, rects, values, strict=True):
        label = "> window" if block[n]["recovery_s"] is None else f"{v:.1f}s"
        ax.annotate(label, (r.get_x() + r.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("s from the kill until re-sent")
    ax.tick_params(axis="x", labelsize=8, rotation=15)
