"""The JSON rules of request bodies: what the API reads, and what it refuses instead of changing.

Every route that takes a body reads it through :func:`check_media_type` and :func:`parse`
(the ingest fast path calls them itself, :class:`JsonBodies` does it in front of FastAPI):

* the body must be declared ``application/json`` (parameters allowed; a ``charset`` must be
  UTF-8), else 415 (:class:`~webhooks.errors.UnsupportedMediaType`). ``application/*+json`` is
  refused too: the API speaks one media type. An empty body is not checked (no body to read);
* it must be UTF-8 JSON (RFC 8259) that survives being stored and delivered unchanged, else
  422 naming where (:class:`JsonRefused`, answered by :func:`api.errors.validation_error_response`):
  no ``NaN``/``Infinity`` (not JSON), no number a double cannot hold (``1e400`` overflows,
  ``1e-400`` would become 0), no integer outside 64 bits (-2**63 .. 2**64-1: they are
  stored and delivered as written; beyond, they would turn into rounded floats), no key twice
  in one object, no lone surrogate escape (``"\\ud800"``), valid UTF-8 only. Decimal fractions
  round to the nearest double as in every JSON parser (``0.1``, ``1.00000000000000000001``).

Cost: a clean body is parsed once by orjson (which already refuses non-JSON literals,
overflow, invalid UTF-8 and lone surrogates) and re-serialized by orjson. When that gives the
body back byte for byte (compact JSON as orjson, ``JSON.stringify`` or httpx write it), or does
once JSON's whitespace is deleted from both (indented JSON: a string's text is written back as
it was read, and a literal tab or newline cannot be in one), nothing was dropped or changed, as a
dropped member or a rewritten number would leave other text. Otherwise the ``:`` of both texts
are counted (every member of every object writes exactly one ``:`` outside strings, and strings
keep theirs, so a duplicate key, of which the parser keeps the last, shows as fewer colons) and
the numbers are searched (``_NUMBERS``). Only a body that fails one of those cheap checks is read
again, slowly, by :func:`_diagnose` (the standard library's parser, keeping every member and
literal), which names the first problem.
"""

import json
import re
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from webhooks.errors import UnsupportedMediaType

MEDIA_TYPE = "application/json"
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson stores exactly (int64 and uint64)
# Where orjson may have changed a number: an integer past 64 bits (20 digits, or 19 after a
# minus) became a float; a number below a double's range (a negative exponent of 3 digits or more,
# or 20+ zeros after the point) became 0 (past the top, orjson refuses it). Found with two plain
# substring searches in the body with every digit and ``-`` turned into 0 and ``E`` into ``e``
# (a regular expression costs several times the parse): 20 zeros, or ``e`` and 4. Strings that
# merely look like this (a 20-digit reference, "----" lines, "file0001") take the slow path, which
# costs time, not answers. An escaped colon (``\\u003a``) would upset the colon count: slow path.
_NUMBERS = bytes.maketrans(b"123456789-E", b"0000000000e")
_LONG_RUN, _TINY, _ESCAPED_COLON = b"0" * 20, b"e0000", b"\\u003"
_SPACE = b" \t\r\n"  # JSON's whitespace


class JsonRefused(ValueError):
    """A body the API will not read: ``loc`` is where (``("payload", "x")``), ``args[0]`` why."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc

    def problem(self) -> dict[str, Any]:
        """As a pydantic-style error, for :func:`api.errors.validation_error_response`."""
        loc = tuple(p if isinstance(p, int) or len(p) <= 100 else f"{p[:100]}..." for p in self.loc)
        return {"loc": loc or ("body",), "msg": str(self)}


def check_media_type(content_type: str | None) -> None:
    """Refuse a body not declared ``application/json`` (parameters allowed; charset UTF-8)."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != MEDIA_TYPE:
        shown = f"'{media.strip()[:100]}'" if media.strip() else "none"
        raise UnsupportedMediaType(
            f"the request body must be sent as Content-Type: {MEDIA_TYPE} (this one: {shown})"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(
                f"the request body must be UTF-8 JSON, sent as Content-Type: {MEDIA_TYPE}"
                f" (this one: charset {value.strip()[:40]!r})"
            )


def parse(raw: bytes) -> Any:
    """The document in ``raw``, or :class:`JsonRefused` saying what and where (see the module)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _diagnose(raw)
        raise JsonRefused((), f"not valid JSON ({exc})") from None  # _diagnose found nothing: be safe
    try:
        again = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # the only reason left: nested deeper than orjson writes
        _diagnose(raw)
        raise JsonRefused((), "cannot be stored as JSON (nested deeper than 254 levels)") from None
    if again == raw or raw.translate(None, _SPACE) == again.translate(None, _SPACE):
        return doc  # orjson wrote it back (give or take spaces between tokens): nothing changed
    if again.count(b":") != raw.count(b":") or _ESCAPED_COLON in raw:
        _diagnose(raw)
    else:
        numbers = raw.translate(_NUMBERS)
        if _LONG_RUN in numbers or _TINY in numbers:
            _diagnose(raw)
    return doc


class _Bad:
    """A literal read by :func:`_diagnose` that the API refuses; ``why`` says why."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class _Object(list[tuple[str, Any]]):
    """An object as its members in order, duplicates kept (``object_pairs_hook``)."""


def _float(text: str) -> float | _Bad:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _Bad(f"the number {text[:40]} is too large for JSON (it overflows a double)")
    if value == 0.0 and re.search("[1-9]", text.lower().partition("e")[0]):
        return _Bad(f"the number {text[:40]} is too small for JSON (it would be stored as 0)")
    return value


def _int(text: str) -> int | _Bad:
    value = int(text) if len(text) <= 21 else None  # int() of thousands of digits is slow, then refused
    if value is None or not INT_MIN <= value <= INT_MAX:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
        return _Bad(f"the integer {shown} is outside 64 bits (-2**63 to 2**64-1): it cannot be kept exact")
    return value


def _constant(text: str) -> _Bad:
    return _Bad(f"{text} is not a JSON number (JSON has no NaN or Infinity)")


def _diagnose(raw: bytes) -> None:
    """Read ``raw`` slowly, keeping what the fast parser hides, and raise at the first problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused((), f"not valid UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(
            text, object_pairs_hook=_Object, parse_float=_float, parse_int=_int, parse_constant=_constant
        )
    except json.JSONDecodeError as exc:
        raise JsonRefused((), f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:
        raise JsonRefused((), "not valid JSON (nested too deep)") from None
    try:
        _walk(doc, ())
    except RecursionError:
        raise JsonRefused((), "not valid JSON (nested too deep)") from None


def _walk(node: Any, loc: tuple[str | int, ...]) -> None:
    if isinstance(node, _Bad):
        raise JsonRefused(loc, node.why)
    if isinstance(node, str):
        _check_text(node, loc)
    elif isinstance(node, _Object):
        seen: set[str] = set()
        for key, value in node:
            _check_text(key, loc)
            if key in seen:
                raise JsonRefused((*loc, key), "this key appears more than once in its object")
            seen.add(key)
            _walk(value, (*loc, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _walk(value, (*loc, i))


def _check_text(text: str, loc: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRefused(loc, "a string holds a lone surrogate escape (not valid Unicode)") from None


class JsonBodies:
    """Applies :func:`check_media_type` and :func:`parse` to every body sent to ``/v1/`` routes
    (behind :class:`api.app.BodyLimit`), answering 415 or 422 before FastAPI reads it; the body
    then goes on unchanged. The console's HTML forms (``/console``) are not JSON and pass by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        except HTTPException as exc:  # BodyLimit: a chunked body grew past the limit
            await errors.error_response(exc.status_code, "payload_too_large", str(exc.detail))(
                scope, receive, send
            )
            return
        raw = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if raw:
            try:
                check_media_type(Headers(scope=scope).get("content-type"))
                parse(raw)
            except UnsupportedMediaType as exc:
                await errors.domain_error_response(exc)(scope, receive, send)
                return
            except JsonRefused as exc:
                await errors.validation_error_response([exc.problem()])(scope, receive, send)
                return
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)
