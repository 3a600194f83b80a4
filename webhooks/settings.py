"""The one ``Settings`` class, read from ``WEBHOOKS_*`` variables and ``.env``.

Built once by the CLI and passed down; the domain modules take plain
arguments and never import this module. :func:`load` turns every invalid,
insecure or contradictory value into a :class:`ConfigError` whose message
names the variable, which the CLI prints as one line before exiting.
"""

import re
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from webhooks.errors import ConfigError, Invalid
from webhooks.intake.operational import Target
from webhooks.outbound.egress import parse_proxy_url
from webhooks.outbound.netguard import check_target_url
from webhooks.outbound.retry import parse_schedule
from webhooks.outbound.signing import secret_key_bytes
from webhooks.queueing.queue import Breaker
from webhooks.queueing.scripts import DEFAULT_MAX_IN_FLIGHT
from webhooks.runtime.replication import AckPolicy

ENV_PREFIX = "WEBHOOKS_"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MIN_TOKEN_LEN = 16
_FRAME_SOURCE = re.compile(
    r"'self'|https?:|(https?://)?(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:(\d{1,5}|\*))?"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    redis_url: str | None = None
    redis_sentinels: str | None = None
    redis_sentinel_master: str | None = None
    # Redis Cluster (issue 14): seed nodes; RQ's trigger queue then needs a plain Redis of its own.
    redis_cluster_nodes: str | None = None
    rq_redis_url: str | None = None
    # RQ's trigger queue on a Sentinel-managed primary of its own (instead of WEBHOOKS_RQ_REDIS_URL).
    rq_redis_sentinels: str | None = None
    rq_redis_sentinel_master: str | None = None
    data_dir: Path = Path("./.webhooks")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    admin_token: SecretStr | None = None
    api_url: str | None = None  # where operator commands reach the API (else platform.json)
    retry_schedule: str = "5,300,1800,7200,18000,36000,36000"
    request_timeout_s: float = Field(15.0, gt=0, le=300)
    max_payload_bytes: int = Field(262144, ge=1, le=16 * 1024 * 1024)
    allow_private_targets: bool = False
    https_only: bool = False
    secret_key: SecretStr | None = None
    # Engine tuning (not in the contract; defaults suit most machines).
    worker_concurrency: int = Field(512, ge=1, le=10000)
    # an endpoint's default max_in_flight
    endpoint_max_in_flight: int = Field(DEFAULT_MAX_IN_FLIGHT, ge=1, le=10000)
    disable_after_s: float = Field(432000.0, ge=0, le=365 * 86400)  # 0: never disable
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_pause_s: float = Field(5.0, gt=0, le=3600)
    breaker_max_pause_s: float = Field(30.0, gt=0, le=86400)
    memory_high_watermark: float = Field(0.7, gt=0.1, le=0.95)  # share of maxmemory
    trim_dead_letters: bool = False
    lease_ttl_s: float = Field(10.0, ge=1, le=600)
    api_workers: int = Field(1, ge=1, le=64)
    tenant_rate_limit_per_s: float = Field(1000.0, ge=0, le=1_000_000)  # 0 turns the limit off
    tenant_rate_burst: float = Field(0.0, ge=0, le=10_000_000)  # 0: twice the rate
    max_endpoints_per_tenant: int = Field(1000, ge=1, le=1_000_000)
    retention_days: float = Field(30.0, gt=0, le=3650)  # events, settled deliveries and dead letters
    log_level: str = "INFO"
    portal_frame_ancestors: str = "'none'"  # CSP frame-ancestors of the console (embedding the portal)
    # Every delivery leaves through this HTTP(S) forward proxy (issue 12; webhooks/outbound/egress.py).
    proxy_url: SecretStr | None = None
    # first-run: which server binary the embedded Redis of `webhooks up` runs (cli/embedded.py).
    embedded_server: str = "auto"
    # Observability (metrics and logs, issue 10).
    log_format: str = "text"  # text | json
    metrics_port: int = Field(0, ge=0, le=65535)  # a worker's or scheduler's own /metrics; 0 = off
    metrics_host: str = "127.0.0.1"
    metrics_per_endpoint: bool = False  # per-endpoint series for the busiest endpoints
    # Operational webhooks (issue 10; webhooks/intake/operational.py): both set, or neither.
    operational_webhook_url: str | None = None
    operational_webhook_secret: SecretStr | None = None
    operational_summary_s: float = Field(60.0, ge=0.1, le=86400)  # delivery.dead summary window
    # Acknowledged writes (issue 20; webhooks/runtime/replication.py): a write is answered once this many
    # replicas (WAIT), and with ack_fsync the primary's AOF fsync (WAITAOF), have it; else 503.
    ack_replicas: int = Field(0, ge=0, le=100)
    ack_timeout_ms: int = Field(1000, ge=1, le=600_000)  # 0 would be WAIT's "forever": refused
    ack_fsync: bool = False

    @field_validator("retry_schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @field_validator("portal_frame_ancestors")
    @classmethod
    def _frame_sources(cls, value: str) -> str:
        """``'none'``, or CSP sources such as ``'self' https://app.example.com https://*.example.com``."""
        sources = value.split()
        if sources == ["'none'"]:
            return "'none'"
        if not sources or not all(_FRAME_SOURCE.fullmatch(src) for src in sources):
            raise ValueError(
                "'none', or space-separated sources like 'self' https://app.example.com https://*.example.com"
            )
        return " ".join(sources)

    @field_validator("proxy_url")
    @classmethod
    def _proxy_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # WEBHOOKS_PROXY_URL= (empty) is unset
        try:
            parse_proxy_url(value.get_secret_value())
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # WEBHOOKS_API_URL= (empty) is unset
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL, e.g. http://127.0.0.1:8000")
        return value

    @field_validator("operational_webhook_url")
    @classmethod
    def _operational_url(cls, value: str | None) -> str | None:
        return value or None  # WEBHOOKS_OPERATIONAL_WEBHOOK_URL= (empty) is unset

    @field_validator("operational_webhook_secret")
    @classmethod
    def _operational_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        try:
            secret_key_bytes(value.get_secret_value())
        except Invalid as exc:
            raise ValueError(f"a whsec_ secret: {exc}") from None
        return value

    @field_validator("embedded_server")
    @classmethod
    def _known_server(cls, value: str) -> str:
        if value not in {"auto", "redis", "valkey"}:
            raise ValueError("one of auto, redis, valkey")
        return value

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value.lower() not in {"text", "json"}:
            raise ValueError("one of text, json")
        return value.lower()

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.admin_token is not None and len(self.admin_token.get_secret_value()) < MIN_TOKEN_LEN:
            raise ValueError(f"WEBHOOKS_ADMIN_TOKEN must be at least {MIN_TOKEN_LEN} characters")
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise ValueError("WEBHOOKS_REDIS_SENTINELS and WEBHOOKS_REDIS_SENTINEL_MASTER go together")
        if self.redis_sentinels and self.redis_url:
            raise ValueError("set WEBHOOKS_REDIS_URL or WEBHOOKS_REDIS_SENTINELS, not both")
        if self.retention_days * 86400 <= sum(parse_schedule(self.retry_schedule)):
            raise ValueError(
                "WEBHOOKS_RETENTION_DAYS must be longer than the whole WEBHOOKS_RETRY_SCHEDULE, "
                "or events would expire before their last attempt"
            )
        if self.redis_cluster_nodes:
            if self.redis_url or self.redis_sentinels:
                raise ValueError(
                    "set one of WEBHOOKS_REDIS_URL, WEBHOOKS_REDIS_SENTINELS, WEBHOOKS_REDIS_CLUSTER_NODES"
                )
            if not self.rq_redis_url and not self.rq_redis_sentinels:
                raise ValueError(
                    "WEBHOOKS_RQ_REDIS_URL is required with WEBHOOKS_REDIS_CLUSTER_NODES: RQ cannot run on "
                    "a Redis Cluster, so its trigger queue needs a small plain Redis (redis://host:port/0), "
                    "or a Sentinel-managed one (WEBHOOKS_RQ_REDIS_SENTINELS)"
                )
            for part in self.redis_cluster_nodes.split(","):
                host, _, port = part.strip().rpartition(":")
                if part.strip() and (not host or not port.isdigit()):
                    raise ValueError("WEBHOOKS_REDIS_CLUSTER_NODES: host:port pairs separated by commas")
        if bool(self.rq_redis_sentinels) != bool(self.rq_redis_sentinel_master):
            raise ValueError("WEBHOOKS_RQ_REDIS_SENTINELS and WEBHOOKS_RQ_REDIS_SENTINEL_MASTER go together")
        if self.rq_redis_sentinels and self.rq_redis_url:
            raise ValueError("set WEBHOOKS_RQ_REDIS_URL or WEBHOOKS_RQ_REDIS_SENTINELS, not both")
        for name, value in (
            ("WEBHOOKS_REDIS_SENTINELS", self.redis_sentinels),
            ("WEBHOOKS_RQ_REDIS_SENTINELS", self.rq_redis_sentinels),
        ):
            for part in value.split(",") if value else []:
                host, _, port = part.strip().rpartition(":")
                if not host or not port.isdigit():
                    raise ValueError(f"{name} is a list of host:port separated by commas")
        if self.rq_redis_url and not self.rq_redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("WEBHOOKS_RQ_REDIS_URL is a redis:// (or rediss://, unix://) URL")
        if bool(self.operational_webhook_url) != bool(self.operational_webhook_secret):
            raise ValueError(
                "WEBHOOKS_OPERATIONAL_WEBHOOK_URL and WEBHOOKS_OPERATIONAL_WEBHOOK_SECRET go together"
            )
        if self.operational_webhook_url:
            try:
                check_target_url(
                    self.operational_webhook_url,
                    allow_private=self.allow_private_targets,
                    https_only=self.https_only,
                )
            except Invalid as exc:
                raise ValueError(f"WEBHOOKS_OPERATIONAL_WEBHOOK_URL: {exc}") from None
        return self

    @property
    def breaker(self) -> "Breaker":
        return Breaker(
            failures=self.breaker_failures,
            pause_ms=int(self.breaker_pause_s * 1000),
            max_pause_ms=int(max(self.breaker_max_pause_s, self.breaker_pause_s) * 1000),
            disable_after_ms=int(self.disable_after_s * 1000),
        )

    @property
    def operational(self) -> "Target | None":
        """Where operational webhooks go (None: off)."""
        if not self.operational_webhook_url or self.operational_webhook_secret is None:
            return None
        return Target(
            self.operational_webhook_url,
            self.operational_webhook_secret.get_secret_value(),
            int(self.operational_summary_s * 1000),
        )

    @property
    def ack(self) -> "AckPolicy":
        return AckPolicy(self.ack_replicas, self.ack_timeout_ms, self.ack_fsync)

    @property
    def schedule(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule)

    @property
    def retention_ms(self) -> int:
        return int(self.retention_days * 86400 * 1000)

    @property
    def cluster_addresses(self) -> list[tuple[str, int]]:
        return _addresses(self.redis_cluster_nodes)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return _addresses(self.redis_sentinels)

    @property
    def rq_sentinel_addresses(self) -> list[tuple[str, int]]:
        return _addresses(self.rq_redis_sentinels)

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL


def _addresses(setting: str | None) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 hosts in brackets) as pairs."""
    out = []
    for part in (setting or "").split(","):
        if part.strip():
            host, _, port = part.strip().rpartition(":")
            out.append((host.strip("[]"), int(port)))
    return out


def load(**overrides: object) -> Settings:
    """Settings from the environment (and ``overrides``); raises :class:`ConfigError` naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(part) for part in err.get("loc", ()) if part != "__root__"]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc:
            raise ConfigError(f"{ENV_PREFIX}{loc[0].upper()}: {msg}") from None
        raise ConfigError(msg) from None
