"""The OpenAPI description of ``POST /v1/events`` and ``POST /v1/events/batch``.

Both are served by :class:`api.ingest.FastIngest` in front of FastAPI, so FastAPI has no route
for them; :func:`document` adds the two operations to the document FastAPI builds (``/openapi.json``),
from the same pydantic models the fast path validates with (:class:`api.schemas.EventCreate`,
:class:`api.schemas.EventBatch`) and answers with (:class:`webhooks.models.Event`, and
:class:`api.errors.ErrorBody` for every error it can give). tests/api/test_ingest_schema.py checks
the document against what the fast path accepts and answers.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema

from api.errors import DESCRIPTIONS, ErrorBody
from api.schemas import EventBatch, EventCreate
from webhooks.intake.validation import MAX_IDEMPOTENCY_KEY
from webhooks.models import Event

# What the fast path can answer besides the 202 (api/ingest.py): unknown credentials (401), an
# admin's unknown tenant_id (404), a body or event too large (413), a body not declared JSON (415),
# a body or event refused (422), the tenant's API rate limit (429), Redis away or full, or the
# tenant's routes changing under a retried commit (503).
ERROR_STATUSES = (401, 404, 413, 415, 422, 429, 503)
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _optional_text(title: str, max_length: int) -> dict[str, Any]:
    return {"anyOf": [{"maxLength": max_length, "type": "string"}, {"type": "null"}], "title": title}


_TENANT_ID = {  # as api.deps.tenant_scope declares it on every other tenant-scoped route
    "in": "query",
    "name": "tenant_id",
    "required": False,
    "schema": _optional_text("Tenant Id", 64),
}
_IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "idempotency-key",
    "required": False,
    "schema": _optional_text("Idempotency-Key", MAX_IDEMPOTENCY_KEY),
}


def _operation(
    operation_id: str, summary: str, body: str, accepted: dict[str, Any], parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    errors = {
        str(status): {"content": _json(_ref(ErrorBody.__name__)), "description": DESCRIPTIONS[status]}
        for status in ERROR_STATUSES
    }
    return {
        "operationId": operation_id,
        "parameters": parameters,
        "requestBody": {"content": _json(_ref(body)), "required": True},
        "responses": {"202": {"content": _json(accepted), "description": "Successful Response"}, **errors},
        "summary": summary,
        "tags": ["events"],
    }


def operations() -> dict[str, dict[str, Any]]:
    """The two path items' ``post`` operations, by path."""
    return {
        "/v1/events": _operation(
            "create_event_v1_events_post",
            "Create Event",
            EventCreate.__name__,
            _ref(Event.__name__),
            [_TENANT_ID, _IDEMPOTENCY_KEY],
        ),
        "/v1/events/batch": _operation(
            "create_events_v1_events_batch_post",
            "Create Events",
            EventBatch.__name__,
            {
                "items": _ref(Event.__name__),
                "title": "Response Create Events V1 Events Batch Post",
                "type": "array",
            },
            [_TENANT_ID],
        ),
    }


def components() -> dict[str, Any]:
    """The schemas the two operations refer to (request bodies as read, responses as written)."""
    _, top = models_json_schema(
        [
            (EventCreate, "validation"),
            (EventBatch, "validation"),
            (Event, "serialization"),
            (ErrorBody, "serialization"),
        ],
        ref_template=_REF,
    )
    defs: dict[str, Any] = top["$defs"]
    return defs


def document(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) include the two ingest operations."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI's document, cached in app.openapi_schema: completed in place
            for path, operation in operations().items():
                schema["paths"].setdefault(path, {})["post"] = operation
            known = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in components().items():
                known.setdefault(name, definition)
        return app.openapi_schema if app.openapi_schema is not None else build()

    app.openapi = openapi  # type: ignore[method-assign]
