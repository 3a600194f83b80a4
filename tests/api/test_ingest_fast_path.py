"""The batch fast path (api/ingest.py) reads exactly what EventBatch accepts, or steps aside."""

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from api.ingest import _accepted_json, _well_formed_batch
from api.jsonbody import JsonRefused, parse
from api.schemas import EVENT_FIELD_MAX, EventBatch
from webhooks.intake.ingest import EventIn


def _model(raw: bytes) -> list[EventIn] | None:
    try:
        return [EventIn(e.event_type, e.payload, e.id) for e in EventBatch.model_validate_json(raw).events]
    except ValidationError:
        return None


def _fast(raw: bytes) -> list[EventIn] | None:
    """What ingest reads without models: the body parsed by the JSON rules, then the fast path."""
    try:
        return _well_formed_batch(parse(raw))
    except JsonRefused:
        return None


def _batch(*events: Any, **extra: Any) -> bytes:
    return orjson.dumps({"events": list(events), **extra})


ACCEPTED = [
    _batch({"event_type": "a.b", "payload": {"n": 1}}),
    _batch({"event_type": "a.b", "payload": None, "id": None}),
    _batch({"event_type": "a.b", "payload": [1, 2.5, "x", True], "id": "evt_given"}),
    _batch(*({"event_type": f"t.{i}", "payload": {"i": i}} for i in range(50))),
    _batch({"event_type": "x" * EVENT_FIELD_MAX, "payload": 1, "id": "i" * EVENT_FIELD_MAX}),
    _batch({"event_type": "é.ü", "payload": {"deep": {"er": ["ünïcode"]}}}),
    b'{"events": [{"event_type": "a.b", "payload": 18446744073709551615}]}',  # the largest uint64
]

REFUSED = [
    b"",
    b"not json",
    b"[]",
    b'{"events": []}',
    b'{"events": {}}',
    b'{"events": null}',
    _batch("not an object"),
    _batch({"event_type": "a.b"}),  # no payload
    _batch({"payload": 1}),  # no event type
    _batch({"event_type": 7, "payload": 1}),
    _batch({"event_type": "a.b", "payload": 1, "id": 7}),
    _batch({"event_type": "a.b", "payload": 1, "extra": 1}),
    _batch({"event_type": "x" * (EVENT_FIELD_MAX + 1), "payload": 1}),
    _batch({"event_type": "a.b", "payload": 1, "id": "i" * (EVENT_FIELD_MAX + 1)}),
    _batch({"event_type": "a.b", "payload": 1}, more=1),  # an unknown top-level field
]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_a_well_formed_batch_is_read_as_the_model_reads_it(raw: bytes) -> None:
    fast = _fast(raw)
    assert fast is not None
    assert fast == _model(raw)


@pytest.mark.parametrize("raw", REFUSED)
def test_anything_the_model_refuses_is_left_to_the_model(raw: bytes) -> None:
    assert _model(raw) is None  # the case is one the model refuses with its own error
    assert _fast(raw) is None


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        (b'{"events": [{"event_type": "a.b", "payload": 1180591620717411303425}]}', ("events", 0, "payload")),
        (b'{"events": [{"event_type": "a.b", "payload": {"k": 1, "k": 2}}]}', ("events", 0, "payload", "k")),
    ],
    ids=["int-past-64-bits", "repeated-key"],
)
def test_what_json_rules_refuse_never_reaches_the_fast_path(raw: bytes, loc: tuple[Any, ...]) -> None:
    """orjson alone would read a float for the integer and the last ``k``: refused, by name."""
    with pytest.raises(JsonRefused) as refused:
        parse(raw)
    assert refused.value.loc == loc


def test_the_202_body_is_written_as_orjson_writes_the_event_object() -> None:
    from webhooks.queueing import history
    from webhooks.queueing.arrivals import NewEvent

    payload = {"n": 1, "s": 'quote " and \\ backslash, ünïcode, \u2028', "f": 1.5, "l": [None, True]}
    record = history.event_record("invoice.paid", 1_800_000_000_000, "", 2, orjson.dumps(payload))
    new = NewEvent(
        "ten_1",
        "evt_given:1.a-b",
        "invoice.paid",
        1_800_000_000_000,
        record,
        "",
        [("dlv_a", "ep_1"), ("dlv_b", "ep_2")],
    )
    created_at = "2027-01-15T08:00:00.000Z"
    expected = {
        "id": new.event_id,
        "tenant_id": new.tenant_id,
        "event_type": new.event_type,
        "created_at": created_at,
        "payload": payload,
        "deliveries": [
            {"id": "dlv_a", "endpoint_id": "ep_1", "status": "pending"},
            {"id": "dlv_b", "endpoint_id": "ep_2", "status": "pending"},
        ],
    }
    written = _accepted_json(new, created_at)
    assert written == orjson.dumps(expected).decode()
    assert orjson.loads(written) == expected
