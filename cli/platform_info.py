"""``<data>/platform.json``: where a running ``webhooks up`` can be reached, for the operator commands.

``up`` writes it (mode 0600: a Redis URL may carry a password) once its API is ready and removes
it when it stops cleanly. A file left by an ``up`` that was killed is *stale*: its pid is gone,
or the data folder's lock (cli/datalock.py) is no longer held.

:func:`operator_api` is how ``tenant create`` and ``dlq`` find the API and its admin token: the
URL from ``--api-url`` or ``WEBHOOKS_API_URL`` when given, else this file's ``api_url``; the
token from ``WEBHOOKS_ADMIN_TOKEN``, else the ``admin-token`` file ``up`` keeps beside it.
:func:`operator_target` is how ``status`` finds its Redis (it reads what the API does not
offer: workers, leases, memory): the settings when ``WEBHOOKS_REDIS_URL``/
``WEBHOOKS_REDIS_SENTINELS`` say so explicitly, else this file. Never a silent default.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cli.datalock import DataLock
from webhooks.errors import ConfigError, StorageError, WebhooksError
from webhooks.runtime.connection import RedisTarget
from webhooks.settings import Settings
from webhooks.wiring import target_of

FILE = "platform.json"
ADMIN_TOKEN_FILE = "admin-token"  # where `up` keeps the admin token it generated


@dataclass
class PlatformInfo:
    pid: int
    started_at: str
    data_dir: str
    api_url: str
    redis_url: str | None
    redis_server: str
    redis_sentinels: str | None = None
    redis_sentinel_master: str | None = None
    console_url: str | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid


def write(data_dir: Path, info: PlatformInfo) -> Path:
    path = data_dir / FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(info), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def remove(data_dir: Path, pid: int) -> None:
    """Remove the file if it is ours (another ``up`` may have taken the folder since)."""
    found = read(data_dir)
    if found is not None and found.pid == pid:
        (data_dir / FILE).unlink(missing_ok=True)


def read(data_dir: Path) -> PlatformInfo | None:
    try:
        raw = json.loads((data_dir / FILE).read_text())
        return PlatformInfo(**raw)
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_live(data_dir: Path, info: PlatformInfo) -> bool:
    return pid_alive(info.pid) and DataLock.held(data_dir)


def running_platform(s: Settings, variable: str, error: type[WebhooksError]) -> PlatformInfo:
    """The live ``platform.json`` of the data folder, or ``error`` saying why there is none
    (``variable`` is the setting that would name the platform explicitly)."""
    data_dir = s.data_dir.resolve()
    info = read(data_dir)
    hint = f"start `webhooks up` there, or set {variable} (or WEBHOOKS_DATA_DIR)"
    if info is None:
        raise error(f"no platform found: {variable} is not set and {data_dir / FILE} does not exist; {hint}")
    if not is_live(data_dir, info):
        raise error(
            f"no platform found: {data_dir / FILE} was left by `webhooks up` pid {info.pid}, "
            f"which is not running any more; {hint}"
        )
    return info


class NoApi(WebhooksError):
    """No API for an operator command: no URL given and no running `webhooks up` here."""


@dataclass(frozen=True)
class ApiTarget:
    url: str
    token: str = field(repr=False)
    source: str  # where the URL came from, for messages


def operator_api(s: Settings, api_url: str | None = None) -> ApiTarget:
    """The API an operator command calls and the admin token it calls with (module doc)."""
    if api_url or s.api_url:
        url, source = (api_url, "--api-url") if api_url else (s.api_url, "WEBHOOKS_API_URL")
        assert url is not None
    else:
        url = running_platform(s, "WEBHOOKS_API_URL", NoApi).api_url
        source = str(s.data_dir.resolve() / FILE)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: the API URL must start with http:// or https://, not {url!r}")
    # `up` may listen on every address; it is reached on this machine's loopback.
    url = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:").rstrip("/")
    if s.admin_token is not None:
        return ApiTarget(url, s.admin_token.get_secret_value(), source)
    token_file = s.data_dir.resolve() / ADMIN_TOKEN_FILE
    try:
        token = token_file.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise ConfigError(
            f"WEBHOOKS_ADMIN_TOKEN is not set and {token_file} (written by `webhooks up`) is not "
            "readable: set WEBHOOKS_ADMIN_TOKEN to the API's admin token"
        )
    return ApiTarget(url, token, source)


def operator_target(s: Settings) -> tuple[RedisTarget, str]:
    """The Redis an operator command should use, and a phrase saying where it came from.

    Raises :class:`StorageError` when neither the settings nor a live ``platform.json`` name one.
    """
    if s.redis_url or s.redis_sentinels or s.redis_cluster_nodes:
        source = (
            "WEBHOOKS_REDIS_URL"
            if s.redis_url
            else "WEBHOOKS_REDIS_SENTINELS"
            if s.redis_sentinels
            else "WEBHOOKS_REDIS_CLUSTER_NODES"
        )
        return target_of(s), source
    data_dir = s.data_dir.resolve()
    info = running_platform(s, "WEBHOOKS_REDIS_URL", StorageError)
    if info.redis_sentinels:
        sentinels = []
        for part in info.redis_sentinels.split(","):
            host, _, port = part.strip().rpartition(":")
            sentinels.append((host.strip("[]"), int(port)))
        return RedisTarget("", tuple(sentinels), info.redis_sentinel_master), f"{data_dir / FILE}"
    return RedisTarget(info.redis_url or ""), f"{data_dir / FILE}"
