"""The objects the client returns.

Objects the server already describes in :mod:`webhooks.models` are those very models (the
API's response shapes), re-exported here. The few below describe routes of the contract
whose server models live elsewhere; they keep any field they do not name (``extra``), so a
newer server's additions are not lost.
"""

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from webhooks.models import (
    ApiKey,
    ApiKeyCreated,
    Attempt,
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    DeliverySummary,
    Endpoint,
    EndpointWithSecret,
    Event,
    ReplayResult,
    Secret,
    Tenant,
    TenantCreated,
)

__all__ = [
    "ApiKey",
    "ApiKeyCreated",
    "Attempt",
    "Delivery",
    "DeliveryDetail",
    "DeliveryStatus",
    "DeliverySummary",
    "Endpoint",
    "EndpointWithSecret",
    "Event",
    "EventInput",
    "EventType",
    "PortalLink",
    "RecoverResult",
    "Replay",
    "ReplayResult",
    "Secret",
    "Tenant",
    "TenantCreated",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Replay(_Open):
    """A replay's progress (``GET /v1/replays/{id}``); ``state``: matching, requeueing, delivering,
    done, cancelled or failed (``error`` says why)."""

    id: str
    matched: int
    done: int
    remaining: int
    state: str
    requeued: int = 0  # requeued so far by its job
    error: str | None = None


class EventType(_Open):
    """An entry of the tenant's event-type catalogue; ``json_schema`` is the API's ``schema`` field."""

    name: str
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    archived: bool = False


class RecoverResult(_Open):
    """The answer of ``POST /v1/endpoints/{id}/recover``: the replay that re-sends what died."""

    replay_id: str | None
    matched: int


class PortalLink(_Open):
    """A one-time sign-in link to a tenant's portal."""

    url: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class EventInput:
    """One event of :meth:`Events.send_batch <webhooks.client.traffic.Events.send_batch>`."""

    event_type: str
    payload: Any
    id: str | None = None
