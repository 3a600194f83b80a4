"""What the operator allows, as the store applies it (built from Settings by the caller)."""

from dataclasses import dataclass

from webhooks.queueing import queue
from webhooks.queueing.scripts import DEFAULT_MAX_IN_FLIGHT
from webhooks.runtime.replication import NO_ACK, AckPolicy


@dataclass(frozen=True, slots=True)
class Policy:
    """What the operator allows; built from Settings by the caller."""

    allow_private_targets: bool = False
    https_only: bool = False
    max_payload_bytes: int = 262144
    max_endpoints_per_tenant: int = 1000
    max_batch: int = 1000
    tenant_rate_per_s: float = 0.0  # API requests per second per tenant; 0 = unlimited
    tenant_burst: float = 0.0
    retention_ms: int = queue.DEFAULT_RETENTION_MS
    default_max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    operational_events: bool = False  # operational webhooks on: pausing notifies the operator
    ack: AckPolicy = NO_ACK  # what a write waits for before it is answered (replicas, fsync)
