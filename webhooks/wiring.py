"""Settings turned into the domain's own objects (Redis target, secret box, store policy).

These helpers only read a :class:`~webhooks.settings.Settings` and build plain domain
values, so every entry point (``cli/``, ``api/main.py``) builds them the same way.
"""

import logging

from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime.connection import RedisTarget
from webhooks.settings import Settings
from webhooks.stores.policy import Policy

log = logging.getLogger("webhooks")


def target_of(s: Settings) -> RedisTarget:
    """Where Redis is: ``WEBHOOKS_REDIS_URL`` (or its default), the Sentinel settings, or the
    cluster nodes (``WEBHOOKS_REDIS_CLUSTER_NODES``, with RQ on ``WEBHOOKS_RQ_REDIS_URL`` or
    ``WEBHOOKS_RQ_REDIS_SENTINELS``)."""
    return RedisTarget(
        "" if s.redis_cluster_nodes else s.effective_redis_url,
        tuple(s.sentinel_addresses),
        s.redis_sentinel_master,
        cluster=tuple(s.cluster_addresses),
        rq_url=s.rq_redis_url,
        rq_sentinels=tuple(s.rq_sentinel_addresses),
        rq_master=s.rq_redis_sentinel_master,
    )


def box_of(s: Settings) -> SecretBox:
    """The at-rest encryption of endpoint secrets; warns when ``WEBHOOKS_SECRET_KEY`` is unset."""
    if s.secret_key is None:
        log.warning("WEBHOOKS_SECRET_KEY is not set: endpoint signing secrets are stored unencrypted")
        return SecretBox(None)
    return SecretBox(s.secret_key.get_secret_value())


def policy_of(s: Settings) -> Policy:
    """The store's limits and rules as the settings give them."""
    return Policy(
        allow_private_targets=s.allow_private_targets,
        https_only=s.https_only,
        max_payload_bytes=s.max_payload_bytes,
        max_endpoints_per_tenant=s.max_endpoints_per_tenant,
        tenant_rate_per_s=s.tenant_rate_limit_per_s,
        tenant_burst=s.tenant_rate_burst,
        retention_ms=s.retention_ms,
        default_max_in_flight=s.endpoint_max_in_flight,
        operational_events=bool(s.operational_webhook_url),
        ack=s.ack,
    )
