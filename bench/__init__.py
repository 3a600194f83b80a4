"""Side-by-side benchmark harness: our platform vs. an RQ peer, a Celery peer and a no-queue ceiling."""
