"""An endpoint's last hour: success rate and latency per five minutes, drawn as two small SVGs, one
above the other on the same time axis, each with its own vertical axis (percent; milliseconds).

:func:`hour_stats` and :func:`geometry` are pure (explicit ``now_ms``);
:func:`endpoint_hour` reads through the store what they need, bounded: the
newest :data:`MAX_DELIVERIES` deliveries of the endpoint created within the
hour, and their attempts made within it (a retry of an older delivery is not
counted; the page says how many deliveries were read and whether it stopped
at the bound).
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime

from webhooks.errors import NotFound
from webhooks.models import Attempt
from webhooks.stores.store import Store

WINDOW_MS = 3_600_000
BUCKETS = 12
MAX_DELIVERIES = 200
READ_CONCURRENCY = 16
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 600, 150, 44, 22
LATENCY_HEIGHT = 110  # the latency chart's own height, below the success chart


def ms_of(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _percentile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Bucket:
    start_ms: int
    attempts: int
    succeeded: int
    p50_ms: int | None


@dataclass(frozen=True, slots=True)
class HourStats:
    buckets: list[Bucket]
    attempts: int
    succeeded: int
    p50_ms: int | None
    p95_ms: int | None
    deliveries_read: int
    capped: bool  # stopped at MAX_DELIVERIES

    @property
    def success_pct(self) -> float | None:
        return None if not self.attempts else 100.0 * self.succeeded / self.attempts


def hour_stats(
    attempts: list[Attempt], now_ms: int, *, deliveries_read: int = 0, capped: bool = False
) -> HourStats:
    """Attempts made in the hour up to ``now_ms``, in :data:`BUCKETS` equal buckets, oldest first."""
    start = now_ms - WINDOW_MS
    size = WINDOW_MS // BUCKETS
    oks = [0] * BUCKETS
    took: list[list[int]] = [[] for _ in range(BUCKETS)]
    for a in attempts:
        at = ms_of(a.at)
        if start <= at <= now_ms:
            i = min(BUCKETS - 1, (at - start) // size)
            oks[i] += a.status_code is not None and 200 <= a.status_code < 300
            took[i].append(a.duration_ms)
    durations = [ms for group in took for ms in group]
    succeeded = sum(oks)
    buckets = [
        Bucket(start + i * size, len(took[i]), oks[i], _percentile(took[i], 0.5)) for i in range(BUCKETS)
    ]
    return HourStats(
        buckets,
        len(durations),
        succeeded,
        _percentile(durations, 0.5),
        _percentile(durations, 0.95),
        deliveries_read,
        capped,
    )


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # for the bar's <title>
    failing: bool  # below 100 % success


@dataclass(frozen=True, slots=True)
class Geometry:
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    bars: list[Bar]
    latency_points: str  # an SVG polyline's points in the latency chart; "" without data
    latency_dots: list[tuple[float, float, str]]  # (x, y, title) of each p50 point
    latency_max_ms: int
    x_labels: list[tuple[float, str]]
    latency_height: int  # the latency chart: same width and time axis, its own height and ms axis
    latency_bottom: int


def geometry(stats: HourStats) -> Geometry:
    """Success chart: a bar per bucket (full height = 100 %). Latency chart (its own axis, 0 to the
    hour's highest p50): a line through each bucket's p50."""
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - 8
    lat_h = LATENCY_HEIGHT - PAD_BOTTOM - 8
    step = plot_w / BUCKETS
    top = 8
    lat_max = max((b.p50_ms for b in stats.buckets if b.p50_ms is not None), default=0)
    bars, points, dots = [], [], []
    for i, b in enumerate(stats.buckets):
        x = PAD_LEFT + i * step
        minutes_ago = (BUCKETS - i) * (WINDOW_MS // BUCKETS) // 60000
        if b.attempts:
            rate = b.succeeded / b.attempts
            h = max(2.0, rate * plot_h)
            label = f"{minutes_ago} to {minutes_ago - 5} min ago: {b.succeeded}/{b.attempts} succeeded"
            if b.p50_ms is not None:
                label += f", p50 {b.p50_ms} ms"
            bars.append(
                Bar(
                    round(x + 2, 1),
                    round(top + plot_h - h, 1),
                    round(step - 4, 1),
                    round(h, 1),
                    label,
                    rate < 1,
                )
            )
        if b.p50_ms is not None and lat_max:
            y = top + lat_h - (b.p50_ms / lat_max) * lat_h
            points.append(f"{x + step / 2:.1f},{y:.1f}")
            dots.append((round(x + step / 2, 1), round(y, 1), f"p50 {b.p50_ms} ms"))
    labels = [(PAD_LEFT + i * step, f"-{(BUCKETS - i) * 5}m") for i in range(0, BUCKETS, 3)]
    return Geometry(
        WIDTH,
        HEIGHT,
        PAD_LEFT,
        top + plot_h,
        bars,
        " ".join(points),
        dots,
        lat_max,
        labels,
        LATENCY_HEIGHT,
        top + lat_h,
    )


async def endpoint_hour(store: Store, tenant_id: str, endpoint_id: str, now_ms: int) -> HourStats:
    """The hour's stats of one endpoint, from at most :data:`MAX_DELIVERIES` deliveries."""
    page = await store.deliveries.list_deliveries(tenant_id, endpoint_id=endpoint_id, limit=MAX_DELIVERIES)
    recent = [d for d in page.data if ms_of(d.created_at) >= now_ms - WINDOW_MS]
    capped = len(recent) == MAX_DELIVERIES and page.next_cursor is not None
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def attempts_of(delivery_id: str) -> list[Attempt]:
        async with gate:
            try:
                return (await store.deliveries.get_delivery(tenant_id, delivery_id)).attempts
            except NotFound:  # expired since it was listed
                return []

    found = await asyncio.gather(*(attempts_of(d.id) for d in recent if d.attempt_count))
    return hour_stats(
        [a for group in found for a in group], now_ms, deliveries_read=len(recent), capped=capped
    )
