"""The Grafana dashboard (deploy/grafana/webhooks.json) queries only metrics the platform defines."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webhooks.runtime import metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "webhooks.json"

# What the dashboard must show (issue 10): throughput, success, latencies, queue, dead letters,
# breakers, Redis memory.
REQUIRED = {
    "webhooks_events_accepted_total",
    "webhooks_attempts_total",
    "webhooks_attempt_seconds_bucket",
    "webhooks_delivery_latency_seconds_bucket",
    "webhooks_queue_depth",
    "webhooks_queue_oldest_age_seconds",
    "webhooks_retry_backlog",
    "webhooks_dead_letters",
    "webhooks_breaker_open_endpoints",
    "webhooks_redis_used_memory_bytes",
    "webhooks_redis_maxmemory_bytes",
}
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
}
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions or
    aggregations (followed by ``(``), keywords, label names (inside ``{}``/grouping clauses),
    Grafana variables, durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries (and $__rate_interval)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # other Grafana variables
    names = set()
    for m in _IDENT.finditer(text):
        before = text[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # the exponent of 1e3, a number's tail
            continue
        if text[m.end() :].lstrip().startswith("(") or m.group() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)


def known_names() -> set[str]:
    return metrics.exposed_names(metrics.REGISTRY) | metrics.exposed_names(metrics.QueueGauges(lambda: {}))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("sum(rate(webhooks_attempts_total[5m]))", {"webhooks_attempts_total"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{k="a",le!="1e3"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("max(a > 0) / on (job) group_left b * 1e3", {"a", "b"}),
        ("sum without (instance) (nope_total offset 1h)", {"nope_total"}),
    ],
)
def test_the_parser_finds_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_queried_metric_exists_in_the_registry() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(expressions(dashboard["panels"]))
    assert exprs, "the dashboard has queries"
    queried = set().union(*(metric_names(e) for e in exprs))
    unknown = queried - known_names()
    assert not unknown, (
        f"the dashboard queries metrics that webhooks/runtime/metrics.py does not define: {unknown}"
    )
    assert queried >= REQUIRED, f"the dashboard does not show {REQUIRED - queried}"


def test_every_panel_uses_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
