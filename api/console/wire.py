"""The request headers an attempt carried, rebuilt for display.

Attempts do not store their headers: every one of them follows from what is
stored (the event id, the attempt's time, the endpoint's custom headers, the
platform's version), and storing them would cost memory on every attempt of
every delivery for a page that few open. This rebuilds them the way
``workers/sender.py`` builds them (a test keeps the two in step), with two
limits the page states: the custom headers are the endpoint's as configured
now, and the signature is not shown (it is computed from the secret, which the
page does not reveal; its shape is).
"""

from api.console.chart import ms_of
from webhooks import __version__
from webhooks.models import Attempt

SIGNATURE_SHOWN = "v1,<signature hidden>"


def sent_headers(custom: dict[str, str], event_id: str, attempt: Attempt) -> list[tuple[str, str]]:
    """``(name, value)`` pairs in the order the sender sets them; the signature value is masked."""
    headers = dict(custom)
    headers["content-type"] = "application/json"
    headers["user-agent"] = f"webhooks/{__version__}"
    headers["webhook-id"] = event_id
    headers["webhook-timestamp"] = str(ms_of(attempt.at) // 1000)
    headers["webhook-signature"] = SIGNATURE_SHOWN
    return list(headers.items())
