"""The compact stored forms of events, deliveries and attempts (what a settled event costs in memory).

An **event** is one string (``keys.event``)::

    ["invoice.paid",1764630000000,"dlv_01kbe29wc048dcb2c4af5c0b",2]\\n{"amount":42}

a JSON header line (event type, created ms, the stem of its delivery ids, their number; see
:func:`webhooks.ids.stem_members`; the stem is "" when it derives from the event id), then the
payload as JSON. The wire body is rebuilt from
these parts byte for byte (:func:`wire_body`), so the type and timestamp are not stored twice.

A **delivery** is one hash (``keys.delivery``) of short fields, small enough for Redis' listpack
encoding: ``e`` event id (absent when the platform made the event's id: it derives from the
delivery id, see :func:`webhooks.ids.event_id_of_stem`), ``p`` endpoint id, ``y`` event type,
``s`` status, ``n`` attempts made, ``sn`` attempts in the current retry series (absent when equal
to ``n``), ``u`` updated ms, ``na`` next attempt ms, ``da`` dead ms, ``l`` the lease holding it,
``a`` its attempts (the last one gives the last status code). Its creation time is the one
encoded in its id.

**Attempts** are packed into field ``a``, one JSON array per line:
``[at ms, status code or null, duration ms, error or null, response excerpt or null]``, with
trailing nulls left out.

Measured (bench/memory.py): about 700 bytes of Redis memory per settled event with a 50-byte
payload and one endpoint, against 1,757 bytes before this format.
"""

from typing import Any

import orjson

from webhooks import ids
from webhooks.models import Attempt, Delivery, DeliveryStatus
from webhooks.timefmt import iso_from_ms


def event_record(event_type: str, created_ms: int, stem: str, n: int, payload_json: bytes) -> str:
    header = orjson.dumps([event_type, created_ms, stem, n])
    return (header + b"\n" + payload_json).decode()


def payload_json_of(record: str) -> str:
    """The payload's JSON as :func:`event_record` stored it."""
    return record.partition("\n")[2]


def wire_body(event_type: str, created_ms: int, payload_json: bytes) -> bytes:
    """The body POSTed to receivers: ``{"type":…,"timestamp":…,"data":…}`` (what orjson would write)."""
    return b"".join(
        (
            b'{"type":',
            orjson.dumps(event_type),
            b',"timestamp":"',
            (iso_from_ms(created_ms) or "").encode(),
            b'","data":',
            payload_json,
            b"}",
        )
    )


class StoredEvent:
    """An event record read back; cheap to make (the payload is parsed only when asked for)."""

    __slots__ = ("created_ms", "event_id", "event_type", "n", "payload_json", "stem", "tenant_id")

    def __init__(self, tenant_id: str, event_id: str, record: str | bytes) -> None:
        raw = record.encode() if isinstance(record, str) else record
        header, _, payload = raw.partition(b"\n")
        self.event_type, self.created_ms, self.stem, self.n = orjson.loads(header)
        if not self.stem:  # the delivery ids derive from the event id
            self.stem = ids.stem_of_event_id(event_id)
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.payload_json = payload

    @property
    def delivery_ids(self) -> list[str]:
        return ids.stem_members(self.stem, self.n)

    @property
    def payload(self) -> Any:
        return orjson.loads(self.payload_json)

    def body(self) -> bytes:
        return wire_body(self.event_type, self.created_ms, self.payload_json)


def attempt_line(
    at_ms: int, status_code: int | None, duration_ms: int, error: str | None, excerpt: str | None
) -> str:
    fields: list[Any] = [at_ms, status_code, duration_ms, error, excerpt or None]
    while fields[-1] is None:  # what is absent at the end is not stored
        fields.pop()
    return orjson.dumps(fields).decode()


def attempts(packed: str | None) -> list[Attempt]:
    out = []
    for number, line in enumerate((packed or "").splitlines(), start=1):
        at_ms, code, duration_ms, error, excerpt = (orjson.loads(line) + [None] * 5)[:5]
        out.append(
            Attempt(
                number=number,
                at=iso_from_ms(at_ms) or "",
                status_code=code,
                duration_ms=duration_ms,
                error=error,
                response_excerpt=excerpt,
            )
        )
    return out


def event_id_of(delivery_id: str, stored: str | None) -> str:
    """A delivery's event id: the stored ``e`` field, else the one its id derives from."""
    return stored or ids.event_id_of_stem(delivery_id[: len(ids.DELIVERY) + 25])


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def delivery(tenant_id: str, delivery_id: str, h: dict[str, str]) -> Delivery:
    """A delivery as the API shows it, from its hash (which must not be empty)."""
    created = ids.ms_of(delivery_id)
    packed = h.get("a")
    last = (orjson.loads(packed.rpartition("\n")[2]) + [None] * 4)[:4] if packed else [None] * 4
    return Delivery(
        id=delivery_id,
        tenant_id=tenant_id,
        event_id=event_id_of(delivery_id, h.get("e")),
        endpoint_id=h["p"],
        event_type=h.get("y", ""),
        status=DeliveryStatus(h["s"]),
        attempt_count=int(h.get("n", 0)),
        created_at=iso_from_ms(created) or "",
        updated_at=iso_from_ms(_int(h.get("u")) or created) or "",
        next_attempt_at=iso_from_ms(_int(h.get("na"))),
        last_status_code=last[1],
        dead_at=iso_from_ms(_int(h.get("da"))),
        last_error=last[3],
    )
