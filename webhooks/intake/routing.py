"""Event types and which endpoints an event goes to.

An event type is dot-separated words of ``[A-Za-z0-9_]`` (``invoice.paid``).
An endpoint's ``event_types`` of None means every type.
"""

import re
from collections.abc import Iterable, Sequence

from webhooks.errors import Invalid

EVENT_TYPE_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
MAX_EVENT_TYPE_LEN = 256


def check_event_type(value: str, field: str = "event_type") -> str:
    """Returns ``value`` when it is a valid event type; raises :class:`Invalid` naming ``field`` otherwise."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_EVENT_TYPE_LEN
        or not EVENT_TYPE_RE.fullmatch(value)
    ):
        raise Invalid(
            f"{field}: an event type is dot-separated words of letters, digits and underscores "
            f"(like 'invoice.paid'), at most {MAX_EVENT_TYPE_LEN} characters"
        )
    return value


def matches(event_types: Sequence[str] | None, event_type: str) -> bool:
    """True when an endpoint with these ``event_types`` receives ``event_type``."""
    return event_types is None or event_type in event_types


def route(endpoints: Iterable[tuple[str, bool, Sequence[str] | None]], event_type: str) -> list[str]:
    """Ids of the enabled endpoints that receive ``event_type``, in the given order.

    Each endpoint is ``(id, disabled, event_types)``.
    """
    return [ep_id for ep_id, disabled, types in endpoints if not disabled and matches(types, event_type)]
