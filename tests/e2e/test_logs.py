"""Logs of real processes: with WEBHOOKS_LOG_FORMAT=json every line of the API and of a worker
(uvicorn's, RQ's and ours) is a JSON object, and the lines about a delivery carry its four ids."""

import json
import subprocess
import sys
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN, ROOT, Processes
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port

IDS = ("tenant_id", "event_id", "delivery_id", "endpoint_id")


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def test_json_logs_parse_and_delivery_lines_carry_the_ids(procs: Processes, receiver: Receiver) -> None:
    port = free_port()
    json_env = {"WEBHOOKS_LOG_FORMAT": "json", "WEBHOOKS_LOG_LEVEL": "DEBUG", "WEBHOOKS_API_PORT": str(port)}
    procs.start("api", env=json_env)
    procs.worker(env=json_env)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    poll(lambda: _ready(api), what="the API")
    tenant = api.post("/v1/tenants", json={"name": "t"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    auth = {"Authorization": f"Bearer {tenant.json()['api_key']}"}
    ok = api.post("/v1/endpoints", json={"url": receiver.url("ok/j"), "event_types": ["a.ok"]}, headers=auth)
    bad = api.post(
        "/v1/endpoints", json={"url": receiver.url("fail/j"), "event_types": ["a.bad"]}, headers=auth
    )
    good_event = api.post("/v1/events", json={"event_type": "a.ok", "payload": {}}, headers=auth).json()
    bad_event = api.post("/v1/events", json={"event_type": "a.bad", "payload": {}}, headers=auth).json()
    poll(lambda: receiver.to("ok/j") and len(receiver.to("fail/j")) == 4, what="the attempts")
    poll(lambda: "the delivery is dead" in procs.logs(), what="the dead delivery's log line")
    api.close()
    procs.stop_all()

    lines = [line for line in procs.logs().splitlines() if line.strip()]
    records: list[dict[str, Any]] = []
    for line in lines:
        record = json.loads(line)  # every line, whoever wrote it
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "rq.worker", "webhooks.delivery"} <= loggers, loggers

    about_deliveries = [r for r in records if "delivery_id" in r]
    expected = {
        good_event["deliveries"][0]["id"]: (good_event, ok.json()),
        bad_event["deliveries"][0]["id"]: (bad_event, bad.json()),
    }
    assert {r["delivery_id"] for r in about_deliveries} == set(expected)
    for r in about_deliveries:
        event, endpoint = expected[r["delivery_id"]]
        assert (r["tenant_id"], r["event_id"], r["endpoint_id"]) == (
            event["tenant_id"],
            event["id"],
            endpoint["id"],
        ), r
    outcomes = [
        r["outcome"] for r in about_deliveries if r["delivery_id"] == bad_event["deliveries"][0]["id"]
    ]
    assert outcomes == ["retrying", "retrying", "retrying", "dead"]
    assert [r["level"] for r in about_deliveries if r.get("outcome") == "succeeded"] == ["debug"]
    text = "\n".join(lines)
    for secret in (ADMIN_TOKEN, tenant.json()["api_key"], ok.json()["secret"]):
        assert secret not in text


def test_a_bad_log_format_stops_the_process_with_one_line(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        env={**env, "WEBHOOKS_LOG_FORMAT": "xml"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "webhooks: WEBHOOKS_LOG_FORMAT: one of text, json"
