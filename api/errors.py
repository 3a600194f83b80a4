"""The one place where domain errors become HTTP answers.

Every error answer is JSON ``{"error": <code>, "message": <text for humans>}``
(validation errors add ``details``). Unexpected exceptions answer 500 with a
generic message; their details go to the log, never to the caller.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from webhooks import errors

log = logging.getLogger("webhooks.api")

STATUS: dict[type[errors.WebhooksError], tuple[int, str]] = {
    errors.NotFound: (404, "not_found"),
    errors.InvalidTarget: (422, "invalid_target"),
    errors.Invalid: (422, "invalid"),
    errors.PayloadTooLarge: (413, "payload_too_large"),
    errors.Conflict: (409, "conflict"),
    errors.LimitExceeded: (429, "limit_exceeded"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.StorageError: (503, "storage_unavailable"),
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.WebhooksError)
    async def _domain(_: Request, exc: errors.WebhooksError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in STATUS:
                status, code = STATUS[cls]
                break
        else:
            status, code = 500, "internal"
        response = error_response(status, code, str(exc))
        if isinstance(exc, errors.LimitExceeded) and exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _location(tuple(e.get("loc", ()))), "message": e.get("msg", "")} for e in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(422, "invalid", summary or "the request is not valid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        import redis

        if isinstance(exc, redis.RedisError):
            log.error("Redis error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
            return error_response(503, "storage_unavailable", "the queue store is unavailable; try again")
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error")
