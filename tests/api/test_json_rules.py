"""Hostile JSON never gets in (api/jsonbody.py): NaN, numbers a double or 64 bits cannot hold,
duplicate keys, lone surrogates and invalid UTF-8 are refused with 422 naming where, on both
ingest routes and on the FastAPI routes, and nothing is stored; a body not declared
``application/json`` is refused with 415."""

import json
import math
from typing import Any

import httpx
import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.jsonbody import JsonRefused, parse
from tests.api.helpers import assert_error
from tests.conftest import Tenant

JSON = {"content-type": "application/json"}


def reference_refuses(raw: bytes) -> bool:
    """What the rules refuse, judged by the standard library's parser keeping everything."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    bad: list[str] = []

    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in members}) != len(members):
            bad.append("duplicate key")
        return dict(members)

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value) or (value == 0 and any(c in "123456789" for c in text.lower().split("e")[0])):
            bad.append(text)
        return value

    def integer(text: str) -> int:
        value = int(text)
        if not -(2**63) <= value < 2**64:
            bad.append(text)
        return value

    def constant(text: str) -> None:
        bad.append(text)

    try:
        doc = json.loads(
            text, object_pairs_hook=pairs, parse_float=number, parse_int=integer, parse_constant=constant
        )
        orjson.dumps(doc)  # a lone surrogate cannot be written as UTF-8
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        return True
    return bool(bad)


# JSON text, built as text so that it can hold what serializers never write.
KEYS = st.sampled_from(['"a"', '"b"', '"\\u0061"', '":"', '"\\u003a"', '"é"', '"\\u00e9"'])
STRINGS = st.one_of(
    st.tuples(st.text(max_size=6), st.booleans()).map(lambda p: json.dumps(p[0], ensure_ascii=p[1])),
    st.sampled_from(['"\\ud800"', '"\\udfff x"', '"a:b"', '"123456789012345678901"', '"----file-0001"']),
)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-99, 99), st.integers(-400, 400)),
    st.builds(lambda k, d: f"0.{'0' * k}{d}", st.integers(0, 400), st.integers(0, 9)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "18446744073709551615", "-9223372036854775809"]),
)
SEPARATORS = st.sampled_from([",", ", ", ",\n  "])
VALUES = st.recursive(
    st.one_of(NUMBERS, STRINGS, st.sampled_from(["true", "false", "null"])),
    lambda inner: st.one_of(
        st.tuples(st.lists(inner, max_size=4), SEPARATORS).map(lambda p: "[" + p[1].join(p[0]) + "]"),
        st.tuples(st.lists(st.tuples(KEYS, inner), max_size=4), SEPARATORS).map(
            lambda p: "{" + p[1].join(f"{k}: {v}" for k, v in p[0]) + "}"
        ),
    ),
    max_leaves=12,
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A JSON document (as bytes), sometimes with a byte that is not UTF-8 put somewhere."""
    raw = draw(VALUES).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[at:]
    return raw


@settings(max_examples=1500, deadline=None)
@given(raw=documents())
def test_the_fast_checks_refuse_exactly_what_the_slow_reading_refuses(raw: bytes) -> None:
    """parse() mostly decides from orjson and byte counts: it must agree with the full reading."""
    refuses = reference_refuses(raw)
    try:
        doc = parse(raw)
    except JsonRefused:
        assert refuses, raw
        return
    assert not refuses, raw
    assert orjson.dumps(doc) == orjson.dumps(json.loads(raw))  # and read what was written


HOSTILE_ATOMS = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1E+400", "1e-400", "-2.5e-999"]),
    st.integers(2**64, 2**80).map(str),
    st.integers(-(2**80), -(2**63) - 1).map(str),
    st.builds(lambda k: f"0.{'0' * k}1", st.integers(330, 400)),
    st.sampled_from(['{"k": 1, "k": 2}', '{"a": 1, "\\u0061": 1}', '{":": 1, "\\u003a": 1}', '"\\ud800"']),
)


@st.composite
def hostile_payloads(draw: st.DrawFn) -> bytes:
    """A payload holding one hostile value, somewhere among clean ones (or bytes not UTF-8)."""
    if draw(st.integers(0, 7)) == 0:
        return b'{"note": "caf\xe9"}'  # Latin-1, not UTF-8
    atom = draw(HOSTILE_ATOMS)
    for _ in range(draw(st.integers(0, 3))):
        atom = draw(st.sampled_from(['{{"x": {}}}', '[1, {}, "s"]', '{{"a": [true, {}]}}'])).format(atom)
    raw = atom.encode()
    assert reference_refuses(raw), raw
    return raw


def stored_events(rds: "redis.Redis") -> list[str]:
    return sorted(rds.keys("wh:{t:*}:e:*"))


HYPOTHESIS_API = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@HYPOTHESIS_API
@given(payload=hostile_payloads())
def test_hostile_json_is_refused_by_the_single_ingest_route(
    api: httpx.Client, tenant: Tenant, rds: "redis.Redis", payload: bytes
) -> None:
    raw = b'{"event_type": "a.b", "payload": ' + payload + b"}"
    resp = api.post("/v1/events", content=raw, headers={**tenant.auth, **JSON})

    body = assert_error(resp, 422)
    assert body["details"][0]["field"].startswith("payload" if b"\xe9" not in payload else "body"), body
    assert stored_events(rds) == []  # nothing stored, ever, across the examples


@HYPOTHESIS_API
@given(payload=hostile_payloads(), before=st.integers(0, 5), after=st.integers(0, 5))
def test_hostile_json_refuses_the_whole_batch(
    api: httpx.Client, tenant: Tenant, rds: "redis.Redis", payload: bytes, before: int, after: int
) -> None:
    clean = [b'{"event_type": "a.b", "payload": {"n": %d}}' % i for i in range(before + after)]
    bad = b'{"event_type": "a.b", "payload": ' + payload + b"}"
    raw = b'{"events": [' + b", ".join([*clean[:before], bad, *clean[before:]]) + b"]}"
    resp = api.post("/v1/events/batch", content=raw, headers={**tenant.auth, **JSON})

    body = assert_error(resp, 422)
    field = "body" if b"\xe9" in payload else f"events.{before}.payload"
    assert body["details"][0]["field"].startswith(field), body
    assert stored_events(rds) == []
    assert api.get("/v1/events", headers=tenant.auth).json()["data"] == []


def test_a_batch_with_one_nan_among_a_thousand_stores_none(
    api: httpx.Client, tenant: Tenant, rds: "redis.Redis"
) -> None:
    events = [b'{"event_type":"a.b","payload":{"i":%d}}' % i for i in range(1000)]
    events[731] = b'{"event_type":"a.b","payload":{"i":731,"x":NaN}}'
    raw = b'{"events":[' + b",".join(events) + b"]}"

    resp = api.post("/v1/events/batch", content=raw, headers={**tenant.auth, **JSON})

    assert_error(resp, 422, "events.731.payload.x", "NaN")
    assert stored_events(rds) == []


def test_what_json_can_carry_exactly_is_stored_as_sent(api: httpx.Client, tenant: Tenant) -> None:
    """The control: numbers at the edges, strings that look suspicious, escapes, indentation."""
    raw = (
        b'{\n  "event_type": "a.b",\n  "payload": {\n    "max": 18446744073709551615,\n'
        b'    "min": -9223372036854775808,\n    "tiny": 5e-324,\n    "big": 1.7976931348623157e308,\n'
        b'    "ref": "123456789012345678901234567890",\n    "line": "------------------------ e-0001",\n'
        b'    "\\u003a": "colon", "\\u0062": "b", "s": "caf\\u00e9 \\ud83d\\ude00"\n  }\n}'
    )
    resp = api.post("/v1/events", content=raw, headers={**tenant.auth, **JSON})

    assert resp.status_code == 202, resp.text
    got = api.get(f"/v1/events/{resp.json()['id']}", headers=tenant.auth).json()["payload"]
    assert got == json.loads(raw)["payload"]
    assert type(got["max"]) is int and got["tiny"] == 5e-324


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/v1/tenants", b'{"name": "a", "name": "b"}', "name"),
        ("/v1/tenants", b'{"name": "\xff"}', "body"),
        ("/v1/endpoints", b'{"url": "http://127.0.0.1:9/h", "rate_limit_per_s": NaN}', "rate_limit_per_s"),
        ("/v1/endpoints", b'{"url": "http://127.0.0.1:9/h", "rate_limit_per_s": 1e400}', "rate_limit_per_s"),
        ("/v1/event-types", b'{"name": "a.b", "schema": {"type": "object", "type": "array"}}', "schema.type"),
        ("/v1/dead-letters/replay", b'{"dry_run": true, "dry_run": false}', "dry_run"),
    ],
)
def test_the_other_routes_follow_the_same_rules(
    api: httpx.Client, tenant: Tenant, admin: dict[str, str], path: str, raw: bytes, field: str
) -> None:
    auth = admin if path == "/v1/tenants" else tenant.auth
    before = _objects(api, tenant, admin)

    resp = api.post(path, content=raw, headers={**auth, **JSON})

    assert_error(resp, 422, field)
    assert _objects(api, tenant, admin) == before


def _objects(api: httpx.Client, tenant: Tenant, admin: dict[str, str]) -> list[Any]:
    """Tenants, endpoints, event types and events: what a refused request must not have created."""
    return [
        api.get("/v1/tenants", headers=admin).json()["data"],
        *(
            api.get(p, headers=tenant.auth).json()["data"]
            for p in ("/v1/endpoints", "/v1/event-types", "/v1/events")
        ),
    ]


NOT_JSON = [
    {"content-type": "text/plain"},
    {"content-type": "application/x-www-form-urlencoded"},
    {"content-type": "application/vnd.api+json"},
    {"content-type": "application/json; charset=latin-1"},
    {},  # none at all
]


@pytest.mark.parametrize("headers", NOT_JSON, ids=lambda h: h.get("content-type", "none"))
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/events", {"event_type": "a.b", "payload": {}}),
        ("/v1/events/batch", {"events": [{"event_type": "a.b", "payload": {}}]}),
        ("/v1/endpoints", {"url": "http://127.0.0.1:9/h"}),
        ("/v1/tenants", {"name": "x"}),
    ],
)
def test_a_body_not_declared_json_is_415(
    api: httpx.Client,
    tenant: Tenant,
    admin: dict[str, str],
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> None:
    auth = admin if path == "/v1/tenants" else tenant.auth
    before = _objects(api, tenant, admin)

    resp = api.post(path, content=json.dumps(body).encode(), headers={**auth, **headers})

    assert_error(resp, 415, "application/json")
    assert resp.json()["error"] == "unsupported_media_type"
    assert _objects(api, tenant, admin) == before


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", 'Application/JSON;charset="UTF-8"'],
)
def test_application_json_with_or_without_a_utf8_charset_is_read(
    api: httpx.Client, tenant: Tenant, content_type: str
) -> None:
    raw = b'{"event_type": "a.b", "payload": {"ok": true}}'
    resp = api.post("/v1/events", content=raw, headers={**tenant.auth, "content-type": content_type})
    assert resp.status_code == 202, resp.text
    resp = api.post(
        "/v1/endpoints",
        content=b'{"url": "http://127.0.0.1:9/h"}',
        headers={**tenant.auth, "content-type": content_type},
    )
    assert resp.status_code == 201, resp.text


def test_the_openapi_document_declares_415_where_a_body_is_read(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    with_body = [
        (path, method, op) for path, ops in paths.items() for method, op in ops.items() if "requestBody" in op
    ]
    assert len(with_body) >= 10
    for path, method, op in with_body:
        assert "415" in op["responses"], (method, path)
        assert "422" in op["responses"], (method, path)


def test_a_chunked_body_past_the_limit_is_still_413_on_the_other_routes(
    api: httpx.Client, tenant: Tenant
) -> None:
    """JsonBodies reads the body under BodyLimit: its refusal mid-stream stays a 413, not a 500."""

    def chunks() -> Any:
        yield b'{"url": "http://127.0.0.1:9/h", "description": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    resp = api.post("/v1/endpoints", content=chunks(), headers={**tenant.auth, **JSON})

    assert_error(resp, 413)
    assert api.get("/v1/endpoints", headers=tenant.auth).json()["data"] == []
