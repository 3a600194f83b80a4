"""The one place where domain errors become HTTP answers.

Every error answer is JSON ``{"error": <code>, "message": <text for humans>}``
(validation errors add ``details``). Unexpected exceptions answer 500 with a
generic message; their details go to the log, never to the caller.
"""

import logging
import re
from collections.abc import Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from webhooks import errors
from webhooks.queueing import reshard

log = logging.getLogger("webhooks.api")

STATUS: dict[type[errors.WebhooksError], tuple[int, str]] = {
    errors.NotFound: (404, "not_found"),
    errors.InvalidTarget: (422, "invalid_target"),
    errors.Invalid: (422, "invalid"),
    errors.PayloadTooLarge: (413, "payload_too_large"),
    errors.UnsupportedMediaType: (415, "unsupported_media_type"),
    errors.Conflict: (409, "conflict"),
    errors.LimitExceeded: (429, "limit_exceeded"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.RoutesChanging: (503, "routes_changing"),
    errors.StorageFull: (503, "storage_full"),
    errors.ReplicationTimeout: (503, "replication_timeout"),
    errors.StorageError: (503, "storage_unavailable"),
}


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str
    message: str
    details: list[ErrorDetail] | None = None


DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, unknown or revoked credentials",
    403: "Known credentials that may not call this route (a tenant key on an admin route)",
    404: "No such object (or it belongs to another tenant), or no such tenant_id",
    409: "The request contradicts the current state",
    413: "The request body or the event is larger than allowed",
    415: "The request body is not sent as `Content-Type: application/json`",
    422: "The request is not valid (NaN, a duplicate key... are refused too); `message` names the field",
    429: "A limit was hit",
    503: "Redis is unavailable or full, or the tenant's endpoints keep changing: retry after `Retry-After`",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the error answers a route can give (all share :class:`ErrorBody`)."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _detail(error: dict[str, Any]) -> dict[str, str]:
    if error.get("type") == "json_invalid":
        loc = tuple(error.get("loc") or ())
        if not loc:  # pydantic parsing the bytes itself (api/ingest.py): its message says where
            return {"field": "body", "message": f"not valid JSON ({error.get('msg', '')})"}
        reason = (error.get("ctx") or {}).get("error", "JSON decode error")
        return {"field": "body", "message": f"not valid JSON ({reason} at character {loc[-1]})"}
    return {"field": _location(tuple(error.get("loc", ()))), "message": error.get("msg", "")}


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for the path template that ``path`` matches."""
    patterns: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "allow_patterns", None)
    if patterns is None:
        patterns = []
        for template, operations in app.openapi().get("paths", {}).items():
            source = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template))
            patterns.append((re.compile(source), sorted(m.upper() for m in operations)))
        app.state.allow_patterns = patterns
    for pattern, methods in patterns:
        if pattern.fullmatch(path):
            return methods
    return []


def domain_error_response(exc: errors.WebhooksError) -> JSONResponse:
    """The answer to a domain error: its status from :data:`STATUS`, ``Retry-After`` on limits, a
    full store and routes that keep changing."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, code = STATUS[cls]
            break
    else:
        status, code = 500, "internal"
    response = error_response(status, code, str(exc))
    waits = errors.LimitExceeded | errors.StorageFull | errors.RoutesChanging | errors.ReplicationTimeout
    if isinstance(exc, waits) and exc.retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
    return response


# What "Redis is unavailable" raises: redis-py's errors, and on a Redis Cluster its cluster errors,
# some of which (a slot not covered during a failover) are not RedisErrors.
REDIS_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)


def redis_error_response(exc: Exception) -> JSONResponse:
    """503: ``storage_full`` (with ``Retry-After``) when Redis refused a write for memory, else
    ``storage_unavailable`` (with ``Retry-After: 1`` while the tenant's slot moves)."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return domain_error_response(
            errors.StorageFull("storage is full: Redis refused the write; retry later")
        )
    if reshard.is_paused(exc):  # the tenant's hash slot is moving between cluster primaries
        response = error_response(
            503, "storage_unavailable", "this tenant's data is moving between Redis Cluster primaries; retry"
        )
        response.headers["Retry-After"] = "1"
        return response
    return error_response(503, "storage_unavailable", "the queue store is unavailable; try again")


def validation_error_response(problems: Sequence[Any]) -> JSONResponse:
    """422 for pydantic-style errors (``loc``, ``msg``, ``type``), naming each field."""
    details = [_detail(e) for e in problems]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return error_response(422, "invalid", summary or "the request is not valid", details=details)


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.WebhooksError)
    async def _domain(_: Request, exc: errors.WebhooksError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI could not read the body: not UTF-8, nested too deep for the JSON parser...
            log.info("unreadable body on %s %s: %r", request.method, request.url.path, exc.__cause__)
            return error_response(
                422,
                "invalid",
                "body: not valid JSON (it must be UTF-8 JSON of reasonable depth)",
                details=[{"field": "body", "message": "not valid JSON"}],
            )
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}
        response = error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
        for name, value in (exc.headers or {}).items():  # e.g. ``Allow`` on 405
            response.headers[name] = value
        if exc.status_code == 405:
            # Starlette names only the first route whose path matched; list every documented method.
            allowed = _allowed_methods(request.app, request.url.path)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(redis.exceptions.RedisClusterException)
    async def _redis(request: Request, exc: Exception) -> JSONResponse:
        # Handled here, not by the catch-all below: Starlette re-raises what reaches that one, and
        # uvicorn would log a traceback for every request while Redis is away.
        log.error("Redis error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return redis_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error")
