"""``webhooks up`` gives each worker and the scheduler a /metrics port and prints them all."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.e2e.test_cli import clean_env
from tests.support.poll import poll
from tests.support.prom import scrape, value
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port


def test_up_prints_a_metrics_address_per_process_and_each_answers(tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    env = clean_env(
        WEBHOOKS_DATA_DIR=str(tmp_path / "data"),
        WEBHOOKS_API_PORT=str(port),
        WEBHOOKS_ALLOW_PRIVATE_TARGETS="true",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith("metrics:"):
                break
        text = "".join(lines)
        token = re.search(r"admin token:\s+(\S+)", text).group(1)  # type: ignore[union-attr]
        urls = dict(re.findall(r"(worker-\d|scheduler|api) (http://\S+/metrics)", lines[-1]))
        assert set(urls) == {"api", "worker-1", "worker-2", "scheduler"}, lines[-1]
        assert len(set(urls.values())) == 4, "one address each"
        for url in urls.values():
            poll(lambda url=url: _answers(url), timeout_s=30, what=f"{url}")

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            admin = {"Authorization": f"Bearer {token}"}
            tenant = api.post("/v1/tenants", json={"name": "up"}, headers=admin).json()
            auth = {"Authorization": f"Bearer {tenant['api_key']}"}
            api.post("/v1/endpoints", json={"url": receiver.url("ok/upm")}, headers=auth).raise_for_status()
            for _ in range(4):
                api.post(
                    "/v1/events", json={"event_type": "a.b", "payload": {}}, headers=auth
                ).raise_for_status()
        poll(lambda: len(receiver.to("ok/upm")) == 4, timeout_s=30, what="the deliveries")

        def attempts() -> float:
            return sum(value(scrape(urls[w]), "webhooks_attempts_total") for w in ("worker-1", "worker-2"))

        poll(lambda: attempts() == 4, what="the workers' attempts")
        assert value(scrape(urls["api"]), "webhooks_events_accepted_total") == 4
        assert value(scrape(urls["scheduler"]), "webhooks_redis_up") == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=40)  # reads the rest and closes the pipe
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
