"""The event-type catalogue as ingest sees it: compiled JSON Schemas and the tenant's strict mode.

A tenant may describe its event types (see :mod:`webhooks.stores.catalogue`). At ingest:

- an event of a catalogued type with a schema must match it (JSON Schema draft 2020-12, checked
  by ``jsonschema-rs``); otherwise :class:`SchemaMismatch` names the failing field's path,
  ``payload.amount: -1 is less than the minimum of 0``;
- in **strict mode** (the tenant's ``strict_event_types``) an event whose type is not in the
  catalogue, or is archived, is refused; without it such events are accepted unchecked.

Schemas are compiled when they are written (so a bad one is refused with the validator's
message) and again, once per distinct schema, in each process that ingests: compiled validators
are cached by schema content. :func:`read`/:func:`catalogue` build a tenant's
:class:`Catalogue` from two replies of the same pipeline that reads its routes
(:mod:`webhooks.intake.ingest`), so both are cached together under the tenant's endpoint version.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio.client import Pipeline

from webhooks import keys
from webhooks.errors import Invalid

MAX_SCHEMA_BYTES = 64 * 1024
MAX_MESSAGE = 300
COMPILED_CACHE = 10_000
DRAFT_2020_12 = (
    "https://json-schema.org/draft/2020-12/schema",
    "https://json-schema.org/draft/2020-12/schema#",
)


class EventType(BaseModel):
    """A catalogued event type, as the API shows it."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    tenant_id: str
    description: str
    json_schema: Any = Field(None, alias="schema")
    archived: bool
    created_at: str
    updated_at: str


class SchemaMismatch(Invalid):
    """An event refused by the catalogue (schema or strict mode): the answer depends on the catalogue
    version the check used, so ingest makes sure that version is current before refusing."""


_compiled: OrderedDict[bytes, jsonschema_rs.Draft202012Validator] = OrderedDict()


def compile_schema(schema: Any, field_name: str = "schema") -> jsonschema_rs.Draft202012Validator:
    """A validator for ``schema`` (an object or a boolean); :class:`Invalid` with the validator's message.

    Draft 2020-12 only. ``$ref`` resolves inside the schema alone: nothing is fetched (no network
    from the API, whatever URL a tenant writes). ``format`` is an annotation, as the draft says.
    """
    if not isinstance(schema, dict | bool):
        raise Invalid(f"{field_name}: a JSON Schema is an object or a boolean")
    try:
        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise Invalid(f"{field_name}: cannot be stored as JSON ({exc})") from None
    if len(text) > MAX_SCHEMA_BYTES:
        raise Invalid(f"{field_name}: at most {MAX_SCHEMA_BYTES} bytes of JSON (got {len(text)})")
    cached = _compiled.get(text)
    if cached is not None:
        _compiled.move_to_end(text)
        return cached
    if isinstance(schema, dict) and schema.get("$schema", DRAFT_2020_12[0]) not in DRAFT_2020_12:
        raise Invalid(
            f"{field_name}: only JSON Schema draft 2020-12 is supported ($schema {DRAFT_2020_12[0]})"
        )
    try:
        validator = jsonschema_rs.Draft202012Validator(schema, offline=True)
    except jsonschema_rs.ValidationError as exc:  # the schema breaks the draft's meta-schema
        where = "".join(f".{p}" for p in exc.instance_path)
        raise Invalid(f"{field_name}{where}: {_short(exc.message)}") from None
    except (ValueError, TypeError, OverflowError, jsonschema_rs.ReferencingError) as exc:
        raise Invalid(
            f"{field_name}: {_short(str(exc).splitlines()[0] if str(exc) else 'invalid')}"
        ) from None
    _compiled[text] = validator
    if len(_compiled) > COMPILED_CACHE:
        _compiled.popitem(last=False)
    return validator


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True, slots=True)
class _Entry:
    validator: jsonschema_rs.Draft202012Validator | None
    archived: bool
    broken: str | None = None  # a stored schema that no longer compiles (say, after an upgrade)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """One tenant's catalogue at one endpoint version."""

    strict: bool = False
    types: dict[str, _Entry] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """False when no event can be refused by it (nothing to check on the hot path)."""
        return self.strict or bool(self.types)

    def check(self, event_type: str, payload: Any) -> None:
        """Raises :class:`SchemaMismatch` naming the field when the catalogue refuses this event."""
        entry = self.types.get(event_type)
        if entry is None or entry.archived:
            if self.strict:
                state = "archived in" if entry is not None else "not in"
                raise SchemaMismatch(
                    f"event_type: {event_type!r} is {state} the tenant's event-type catalogue "
                    "(strict_event_types is on)"
                )
            if entry is None:
                return
        if entry.broken is not None:
            raise SchemaMismatch(
                f"event_type: the schema of {event_type!r} in the catalogue does not compile "
                f"({entry.broken}); fix it with PATCH /v1/event-types/{event_type}"
            )
        if entry.validator is None:
            return
        try:
            entry.validator.validate(payload)
        except jsonschema_rs.ValidationError as exc:
            where = "".join(f".{p}" for p in exc.instance_path)
            raise SchemaMismatch(f"payload{where}: {_short(exc.message)}") from None
        except ValueError as exc:  # an instance the validator cannot read
            raise SchemaMismatch(
                f"payload: cannot be checked against the schema ({_short(str(exc))})"
            ) from None


EMPTY = Catalogue()


def read(pipe: "Pipeline", tenant_id: str) -> None:
    """Queue the two reads :func:`catalogue` takes the replies of, in this order."""
    pipe.hgetall(keys.event_types(tenant_id))
    pipe.hget(keys.tenant(tenant_id), "strict_event_types")


def catalogue(docs: dict[str, str] | None, strict: str | None) -> Catalogue:
    """The :class:`Catalogue` from the replies queued by :func:`read`."""
    if not docs and strict != "1":
        return EMPTY
    types = {}
    for name, raw in (docs or {}).items():
        doc = orjson.loads(raw)
        schema, archived = doc.get("schema"), bool(doc.get("archived"))
        try:
            types[name] = _Entry(None if schema is None else compile_schema(schema), archived)
        except Invalid as exc:  # refuse its events with a pointer, rather than accept them unchecked
            types[name] = _Entry(None, archived, broken=str(exc))
    return Catalogue(strict=strict == "1", types=types)
