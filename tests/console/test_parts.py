"""The console's pure parts: the hour chart, the rebuilt request headers, the frame-ancestors setting,
and the store's one-endpoint test event."""

import asyncio
import time

import pytest
import redis.asyncio

from api.console import chart, wire
from webhooks.errors import ConfigError, Conflict
from webhooks.models import Attempt
from webhooks.outbound.secretbox import SecretBox
from webhooks.queueing import depths
from webhooks.settings import load
from webhooks.stores.store import TEST_EVENT_TYPE, Policy, Store
from webhooks.timefmt import iso_from_ms
from workers.sender import build_headers

NOW = 1_800_000_000_000


def attempt(ms_ago: int, status: int | None, duration_ms: int, number: int = 1) -> Attempt:
    return Attempt(
        number=number,
        at=iso_from_ms(NOW - ms_ago) or "",
        status_code=status,
        duration_ms=duration_ms,
        error=None if status else "timeout",
        response_excerpt=None,
    )


def test_hour_stats_bucket_attempts_by_five_minutes_and_ignore_older_ones() -> None:
    attempts = [
        attempt(59 * 60_000, 200, 10),  # the oldest bucket
        attempt(59 * 60_000 + 1, 500, 30),
        attempt(61 * 60_000, 200, 999),  # before the hour: not counted
        attempt(1000, 200, 40),  # the newest bucket
        attempt(2000, None, 3000),
        attempt(3000, 204, 50),
    ]
    stats = chart.hour_stats(attempts, NOW, deliveries_read=4)
    assert len(stats.buckets) == 12
    assert (stats.buckets[0].attempts, stats.buckets[0].succeeded) == (2, 1)
    assert (stats.buckets[-1].attempts, stats.buckets[-1].succeeded) == (3, 2)
    assert sum(b.attempts for b in stats.buckets[1:-1]) == 0
    assert stats.attempts == 5 and stats.succeeded == 3 and stats.success_pct == 60.0
    assert stats.p50_ms == 40 and stats.p95_ms == 3000
    assert stats.buckets[-1].p50_ms == 50 and stats.buckets[0].start_ms == NOW - 3_600_000


def test_the_chart_draws_one_bar_per_busy_bucket_scaled_to_its_success_rate() -> None:
    stats = chart.hour_stats(
        [attempt(1000, 200, 40), attempt(1000, 500, 80), attempt(30 * 60_000, 200, 20)], NOW
    )
    g = chart.geometry(stats)
    assert len(g.bars) == 2
    half, full = sorted(g.bars, key=lambda b: b.height)
    assert half.failing and not full.failing
    assert abs(full.height - 2 * half.height) < 0.5, "100 % is twice as tall as 50 %"
    assert full.y + full.height == pytest.approx(g.plot_bottom) and half.label.endswith("p50 80 ms")
    assert len(g.latency_points.split()) == 2 and g.latency_max_ms == 80
    assert chart.geometry(chart.hour_stats([], NOW)).bars == []


def test_latency_has_its_own_chart_and_axis_not_the_success_rates() -> None:
    # a bucket of 10 % success at 900 ms and one of 100 % at 300 ms
    slow = [attempt(1000, 500, 900)] * 9 + [attempt(1000, 200, 900)]
    stats = chart.hour_stats([*slow, attempt(30 * 60_000, 200, 300)], NOW)
    g = chart.geometry(stats)
    ys = sorted(y for _, y, _ in g.latency_dots)
    assert g.latency_max_ms == 900
    assert ys[0] == pytest.approx(8), "the highest p50 is at the top of the latency axis"
    lat_plot = g.latency_bottom - 8
    assert ys[1] == pytest.approx(g.latency_bottom - lat_plot / 3, abs=0.2), "300 ms is a third of 900 ms"
    assert all(8 <= y <= g.latency_bottom < g.latency_height for y in ys)
    # the success bars keep their own scale: 10 % is a tenth of the height of 100 %
    low, high = sorted(g.bars, key=lambda b: b.height)
    assert low.height == pytest.approx(high.height / 10, abs=0.2)


def test_rebuilt_headers_are_the_senders_but_for_the_signature() -> None:
    custom = {"X-Team": "blue", "Authorization": "Bearer receiver-token"}
    a = attempt(5000, 200, 12)
    rebuilt = wire.sent_headers(custom, "evt_1", a)
    sent = build_headers(custom, "evt_1", (NOW - 5000) // 1000, b"{}", [b"k" * 32])
    assert [name for name, _ in rebuilt] == list(sent)
    assert {n: v for n, v in rebuilt if n != "webhook-signature"} == {
        n: v for n, v in sent.items() if n != "webhook-signature"
    }
    assert dict(rebuilt)["webhook-signature"] == wire.SIGNATURE_SHOWN != sent["webhook-signature"]


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("'none'", "'none'"),
        ("'self'  https://app.example.com", "'self' https://app.example.com"),
        ("https://*.example.com http://localhost:8080", "https://*.example.com http://localhost:8080"),
    ],
)
def test_frame_ancestors_setting_takes_csp_sources(value: str, kept: str) -> None:
    assert load(portal_frame_ancestors=value).portal_frame_ancestors == kept


@pytest.mark.parametrize(
    "value", ["", "'none' https://a.example", "https://a.example; script-src *", "'unsafe-inline'", "a,b"]
)
def test_frame_ancestors_setting_refuses_anything_else(value: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOKS_PORTAL_FRAME_ANCESTORS"):
        load(portal_frame_ancestors=value)


def test_the_test_event_goes_to_that_endpoint_only(
    loop: asyncio.AbstractEventLoop, ar: "redis.asyncio.Redis"
) -> None:
    store = Store(ar, SecretBox(None), Policy(allow_private_targets=True))
    now = int(time.time() * 1000)
    tenant = loop.run_until_complete(store.tenants.create_tenant("acme", now)).id
    picky = loop.run_until_complete(
        store.endpoints.create_endpoint(
            tenant, url="http://127.0.0.1:9/a", now_ms=now, event_types=["invoice.paid"]
        )
    )
    loop.run_until_complete(store.endpoints.create_endpoint(tenant, url="http://127.0.0.1:9/b", now_ms=now))
    sent = loop.run_until_complete(store.send_test_event(tenant, picky.id, now))
    assert sent.event_type == TEST_EVENT_TYPE and [d.endpoint_id for d in sent.deliveries] == [picky.id]
    stored = loop.run_until_complete(store.deliveries.get_event(tenant, sent.id))
    assert [d.endpoint_id for d in stored.deliveries] == [picky.id]
    assert loop.run_until_complete(depths.depths(ar)).ready == 1
    loop.run_until_complete(store.endpoints.update_endpoint(tenant, picky.id, {"disabled": True}, now))
    with pytest.raises(Conflict, match="disabled"):
        loop.run_until_complete(store.send_test_event(tenant, picky.id, now))
