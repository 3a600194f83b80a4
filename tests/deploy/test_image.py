"""The image's virtualenv runs every command the deployment files give it (no container engine).

Docker and podman cannot run here, so the test rebuilds the Dockerfile's first stage
(tests/deploy/buildcontext.py: exactly the paths its COPY lines take, a fresh virtualenv,
``pip install`` of that folder), then, with that virtualenv's ``bin`` first on the PATH as in the
image, from a working directory outside the source tree that must stay empty (the image's root
filesystem is read-only):

- ``webhooks --help`` and ``webhooks --version``;
- every platform command of the compose files, the Kubernetes manifests and the systemd units
  (``api``, ``worker --no-scheduler``, ``scheduler``, ``worker``), at once, against a real Redis,
  until ``/readyz`` answers and an event posted through the API reaches a receiver on loopback;
- every health-check command of the compose files, against those processes.
"""

import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ADMIN_TOKEN, SECRET_KEY
from tests.deploy.buildcontext import ROOT, build_context, image_venv
from tests.support.poll import poll
from tests.support.receiver import Receiver
from tests.support.redis_proc import free_port
from webhooks import DISTRIBUTION

DEPLOY = ROOT / "deploy"
COMPOSE_FILES = [DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.sentinel.yml"]
PLATFORM = ("api", "scheduler", "worker")


def compose_services() -> list[dict[str, Any]]:
    return [
        svc for path in COMPOSE_FILES for name, svc in yaml.safe_load(path.read_text())["services"].items()
        if name in PLATFORM
    ]  # fmt: skip


def platform_commands() -> set[tuple[str, ...]]:
    """The ``webhooks`` arguments of every compose service, Kubernetes container and systemd unit."""
    found = {tuple(svc["command"]) for svc in compose_services()}
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                found |= {tuple(c["args"]) for c in doc["spec"]["template"]["spec"]["containers"]}
    for unit in (DEPLOY / "systemd").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                binary, *args = shlex.split(line.removeprefix("ExecStart="))
                assert Path(binary).name == "webhooks", line
                found.add(tuple(args))
    return found


def health_checks() -> set[tuple[str, ...]]:
    """The compose files' health-check commands of the platform services (``CMD`` form)."""
    out = set()
    for svc in compose_services():
        kind, *argv = svc["healthcheck"]["test"]
        assert kind == "CMD", svc["healthcheck"]
        out.add(tuple(argv))
    return out


class Platform:
    """The platform's processes, started from the image's virtualenv; all killed at teardown."""

    def __init__(self, bin_dir: Path, cwd: Path, logs: Path, env: dict[str, str]) -> None:
        self.bin_dir, self.cwd, self.logs, self.env = bin_dir, cwd, logs, env
        self.procs: dict[tuple[str, ...], subprocess.Popen[bytes]] = {}
        self.metrics_ports: list[int] = []

    def run(self, *argv: str, env: dict[str, str] | None = None) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            argv, env={**self.env, **(env or {})}, cwd=self.cwd, capture_output=True, text=True, timeout=60
        )

    def start(self, args: tuple[str, ...]) -> None:
        # Compose and the systemd env file run two API worker processes (Prometheus multiprocess
        # mode, a temporary folder); the Kubernetes ConfigMap one.
        env = {"WEBHOOKS_API_WORKERS": "2"} if args[0] == "api" else {}
        if args[0] != "api":
            self.metrics_ports.append(free_port())
            env["WEBHOOKS_METRICS_PORT"] = str(self.metrics_ports[-1])
        with open(self.logs / f"{'-'.join(args)}.log", "wb") as log:
            self.procs[args] = subprocess.Popen(
                [str(self.bin_dir / "webhooks"), *args],
                env={**self.env, **env},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return "\n".join(
            f"==> {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in self.logs.iterdir()
        )

    def running(self) -> bool:
        return all(p.poll() is None for p in self.procs.values())

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def platform(tmp_path: Path, redis_url: str) -> Iterator[Platform]:
    bin_dir = image_venv(build_context(tmp_path / "context"), tmp_path / "venv")
    workdir = tmp_path / "workdir"  # the image's WORKDIR, outside any source tree
    workdir.mkdir(mode=0o555)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        # The image's PATH (its virtualenv first) and settings; nothing else from this environment.
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "WEBHOOKS_API_HOST": "127.0.0.1",
        "WEBHOOKS_API_PORT": str(free_port()),
        "WEBHOOKS_DATA_DIR": str(tmp_path / "data"),
        "WEBHOOKS_REDIS_URL": redis_url,
        "WEBHOOKS_ADMIN_TOKEN": ADMIN_TOKEN,
        "WEBHOOKS_SECRET_KEY": SECRET_KEY,
        "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on loopback
    }
    plat = Platform(bin_dir, workdir, logs, env)
    yield plat
    plat.stop()
    workdir.chmod(0o755)


def test_the_image_venv_runs_every_command_of_the_manifests(platform: Platform, receiver: Receiver) -> None:
    where = platform.run(
        "python", "-c", "import api, cli, hookyard_client, webhooks, workers; print(api.__file__, "
        "cli.__file__, hookyard_client.__file__, webhooks.__file__, workers.__file__)",
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert path.startswith(str(platform.bin_dir.parent)), f"imported from outside the image: {path}"

    helped = platform.run("webhooks", "--help")
    assert helped.returncode == 0 and "usage: webhooks" in helped.stdout, helped.stdout + helped.stderr
    version = platform.run("webhooks", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.split() == [DISTRIBUTION, metadata.version(DISTRIBUTION)]

    commands = platform_commands()
    assert {c[0] for c in commands} == set(PLATFORM), commands
    for args in sorted(commands):
        platform.start(args)
    url = f"http://127.0.0.1:{platform.env['WEBHOOKS_API_PORT']}"

    def ready() -> bool:
        assert platform.running(), platform.output()
        try:
            return httpx.get(url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    poll(ready, timeout_s=60, interval_s=0.2, what="/readyz of the image's API")
    with httpx.Client(base_url=url, timeout=10) as api:
        made = api.post(
            "/v1/tenants", json={"name": "image"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert made.status_code == 201, made.text
        auth = {"Authorization": f"Bearer {made.json()['api_key']}"}
        endpoint = api.post("/v1/endpoints", json={"url": receiver.url("ok/image")}, headers=auth)
        assert endpoint.status_code == 201, endpoint.text
        event = api.post("/v1/events", json={"event_type": "image.built", "payload": {}}, headers=auth)
        assert event.status_code == 202, event.text
    (got,) = poll(lambda: receiver.to("ok/image"), timeout_s=30, what="the event at the receiver")
    assert got.headers["webhook-id"] == event.json()["id"]

    api_port = platform.env["WEBHOOKS_API_PORT"]
    for check in sorted(health_checks()):
        # The compose files' fixed ports (8000, 9100) are this test's free ones.
        targets = [api_port] if "/healthz" in check[-1] else [str(p) for p in platform.metrics_ports]
        for port in targets:
            argv = [a.replace(":8000/", f":{port}/").replace(":9100/", f":{port}/") for a in check]
            done = platform.run(*argv)
            assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    assert platform.running(), platform.output()
    assert not any(platform.cwd.iterdir()), "the processes wrote into their working directory"
