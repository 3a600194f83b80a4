"""Rules for what tenants may configure: custom headers, event ids, descriptions.

Pure functions that return the cleaned value or raise :class:`Invalid` with a
message that names the field and never echoes a header's value.
"""

import re

from webhooks.errors import Invalid

MAX_HEADERS = 20
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 4096
MAX_DESCRIPTION = 1024
MAX_EVENT_ID = 256
MAX_EVENT_TYPES = 256
MAX_IDEMPOTENCY_KEY = 256

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
}
_RESERVED_PREFIXES = ("webhook-",)
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def is_utf8_text(value: str) -> bool:
    """False for strings that cannot be stored as UTF-8 (lone surrogates from ``\\ud800`` in JSON)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Custom headers an endpoint adds to every delivery; may not override the signed or framing ones."""
    if not headers:
        return {}
    if len(headers) > MAX_HEADERS:
        raise Invalid(f"headers: at most {MAX_HEADERS} custom headers")
    seen: set[str] = set()
    for name, value in headers.items():
        low = name.lower()
        if not name or len(name) > MAX_HEADER_NAME or not _TOKEN_RE.fullmatch(name):
            raise Invalid("headers: a header name is a token of letters, digits and !#$%&'*+.^_`|~-")
        if low in _RESERVED_HEADERS or low.startswith(_RESERVED_PREFIXES):
            raise Invalid(f"headers: {name!r} is set by the platform and cannot be overridden")
        if low in seen:
            raise Invalid(f"headers: {name!r} appears twice")
        seen.add(low)
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE:
            raise Invalid(
                f"headers: the value of {name!r} is a string of at most {MAX_HEADER_VALUE} characters"
            )
        if any(not (0x20 <= ord(c) < 0x7F or c == "\t") for c in value):
            # HTTP clients send header values as ASCII; anything else would fail every attempt.
            raise Invalid(f"headers: the value of {name!r} must be printable ASCII (no control characters)")
    return dict(headers)


def check_event_id(value: str) -> str:
    if not value or len(value) > MAX_EVENT_ID or not EVENT_ID_RE.fullmatch(value):
        raise Invalid(f"id: 1 to {MAX_EVENT_ID} characters of letters, digits and _.:-")
    return value


def check_idempotency_key(value: str) -> str:
    if not value or len(value) > MAX_IDEMPOTENCY_KEY or not value.isprintable() or not value.isascii():
        raise Invalid(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return value


def check_description(value: str | None) -> str:
    value = value or ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION or not is_utf8_text(value):
        raise Invalid(f"description: text of at most {MAX_DESCRIPTION} characters")
    return value


def check_rate_limit(value: float | None) -> float | None:
    if value is not None and not 0 < value <= 100000:
        raise Invalid("rate_limit_per_s: a number above 0 and at most 100000, or null for no limit")
    return value
