"""The catalogue's pure parts: schema compilation (once per distinct schema) and the ingest check."""

import orjson
import pytest

from webhooks.errors import Invalid
from webhooks.intake.event_types import EMPTY, SchemaMismatch, catalogue, compile_schema

SCHEMA = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}


def doc(schema: object = None, archived: bool = False) -> str:
    return orjson.dumps({"name": "x", "schema": schema, "archived": archived}).decode()


def test_the_same_schema_compiles_once_whatever_its_key_order() -> None:
    first = compile_schema(SCHEMA)
    reordered = {"properties": SCHEMA["properties"], "type": "object"}
    assert compile_schema(reordered) is first
    assert compile_schema({**SCHEMA, "required": ["items"]}) is not first


def test_failing_field_path_walks_objects_and_arrays() -> None:
    cat = catalogue({"a.b": doc(SCHEMA)}, None)
    cat.check("a.b", {"items": [1, 2]})
    with pytest.raises(SchemaMismatch, match=r"^payload\.items\.2: .*integer"):
        cat.check("a.b", {"items": [1, 2, "three"]})
    with pytest.raises(SchemaMismatch, match=r"^payload: "):
        cat.check("a.b", [])


def test_boolean_schemas_and_types_without_schema() -> None:
    cat = catalogue({"never.ok": doc(False), "always.ok": doc(True), "free.form": doc(None)}, "0")
    cat.check("always.ok", {"x": 1})
    cat.check("free.form", {"x": 1})
    cat.check("not.catalogued", {"x": 1})
    with pytest.raises(SchemaMismatch, match="payload"):
        cat.check("never.ok", {})


def test_strict_mode_and_archived_types() -> None:
    cat = catalogue({"live.one": doc(), "old.one": doc(archived=True)}, "1")
    cat.check("live.one", {})
    with pytest.raises(SchemaMismatch, match="not in"):
        cat.check("other.one", {})
    with pytest.raises(SchemaMismatch, match="archived"):
        cat.check("old.one", {})
    relaxed = catalogue({"old.one": doc(SCHEMA, archived=True)}, None)
    with pytest.raises(SchemaMismatch, match=r"payload\.items"):
        relaxed.check("old.one", {"items": ["x"]})  # not strict: an archived type is still checked


def test_an_empty_catalogue_checks_nothing() -> None:
    assert catalogue({}, None) is EMPTY and not EMPTY.active
    assert catalogue({}, "1").active


def test_oversized_and_unserializable_schemas_are_invalid() -> None:
    with pytest.raises(Invalid, match="at most"):
        compile_schema({"enum": ["x" * 1000] * 100})
    with pytest.raises(Invalid, match="object or a boolean"):
        compile_schema(3)
    with pytest.raises(Invalid, match="schema"):
        compile_schema({"minimum": 2**70})


def test_a_stored_schema_that_no_longer_compiles_refuses_its_events_with_a_pointer() -> None:
    cat = catalogue({"a.b": doc({"type": "nope"}), "c.d": doc(SCHEMA)}, None)
    with pytest.raises(SchemaMismatch, match=r"does not compile .* PATCH /v1/event-types/a\.b"):
        cat.check("a.b", {})
    cat.check("c.d", {"items": [1]})
