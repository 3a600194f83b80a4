"""The domain's error tree.

Every error a caller can act on derives from :class:`WebhooksError`. The API
maps each class to one HTTP status in a single place (``api/errors.py``); the
CLI prints ``str(error)`` and exits non-zero. Messages are written for humans
and never contain secrets, API keys or tokens.
"""


class WebhooksError(Exception):
    """Base of every domain error."""


class NotFound(WebhooksError):
    """The object does not exist, or belongs to another tenant (same answer on purpose)."""


class Invalid(WebhooksError):
    """Input that breaks a domain rule (bad URL, event type, header...)."""


class InvalidTarget(Invalid):
    """An endpoint URL, or the address it resolves to, that deliveries may not go to."""


class UnsupportedMediaType(WebhooksError):
    """A request body not declared as the JSON the API reads (``Content-Type: application/json``)."""


class PayloadTooLarge(WebhooksError):
    """An event body above the configured ``max_payload_bytes``."""


class Conflict(WebhooksError):
    """The request contradicts the current state (e.g. a name already taken)."""


class LimitExceeded(WebhooksError):
    """A quota or rate limit was hit; ``retry_after_s`` says when trying again may succeed."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RoutesChanging(WebhooksError):
    """The tenant's endpoints (or event-type catalogue) changed under every one of a few tries at
    routing its events: nothing was written, Redis is fine; try again after ``retry_after_s``."""

    def __init__(self, message: str = "", retry_after_s: float = 1.0) -> None:
        super().__init__(
            message
            or "the tenant's endpoints kept changing while its events were routed; nothing was stored; retry"
        )
        self.retry_after_s = retry_after_s


class Unauthorized(WebhooksError):
    """Missing or unknown credentials."""


class Forbidden(WebhooksError):
    """Known credentials that may not perform this operation (e.g. a tenant key on an admin route)."""


class ConfigError(WebhooksError):
    """A setting that is invalid, insecure or contradicts another; stops the process at start."""


class StorageError(WebhooksError):
    """Redis is unreachable or misconfigured."""


class StorageFull(StorageError):
    """Pending work fills Redis' memory budget: new events wait until deliveries drain it."""

    def __init__(self, message: str = "", retry_after_s: float = 5.0) -> None:
        super().__init__(
            message
            or "storage is full of pending deliveries: new events are refused until they drain; retry later"
        )
        self.retry_after_s = retry_after_s


class ReplicationTimeout(StorageError):
    """A write reached the primary but not, in time, the replicas (or the AOF fsync) that
    ``WEBHOOKS_ACK_REPLICAS`` / ``WEBHOOKS_ACK_FSYNC`` ask for before it is answered. It stays
    written: the same request (the same event id) tried again finds it."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DataFormatError(StorageError):
    """The data in Redis is of a format this version cannot use: newer than it knows (written by a
    newer release), or older with no migration registered to bring it up (webhooks/queueing/dataformat.py)."""
