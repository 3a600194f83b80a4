"""Self-hosted webhooks: signed, retried, durable HTTP deliveries on Redis and RQ."""

__version__ = "0.1.0"
