"""Entry points: the `webhooks` console script and the supervision of its processes (see cli/main.py)."""
