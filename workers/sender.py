"""One HTTP attempt of a delivery: build the signed request, send it, read a short excerpt.

Never raises for anything the receiver or the network does: every failure
becomes an :class:`AttemptResult` with ``status_code=None`` and an ``error``:
one line, at most ``ERROR_CHARS`` characters, that names the failure without a
URL's credentials, query or fragment or any header value, and never quotes a
status the receiver did not send (aiohttp calls a malformed response a "400").
"""

import asyncio
import re
import ssl
import time
from dataclasses import dataclass

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError, PayloadEncodingError

from webhooks import __version__
from webhooks.outbound.netguard import find_forbidden_address_error
from webhooks.outbound.signing import SigningKey, signature_header

USER_AGENT = f"webhooks/{__version__}"
EXCERPT_BYTES = 1024
ERROR_CHARS = 300
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*)[?#]\S*")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    duration_ms: int
    error: str | None = None
    excerpt: str | None = None
    retry_after: str | None = None


def build_headers(
    custom: dict[str, str], msg_id: str, timestamp_s: int, body: bytes, keys: list[SigningKey]
) -> dict[str, str]:
    headers = dict(custom)
    headers["content-type"] = "application/json"
    headers["user-agent"] = USER_AGENT
    headers["webhook-id"] = msg_id
    headers["webhook-timestamp"] = str(timestamp_s)
    headers["webhook-signature"] = signature_header(keys, msg_id, timestamp_s, body)
    return headers


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def one_line(text: str) -> str:
    """``text`` on one line, at most ``ERROR_CHARS`` long, without URL credentials, queries or
    fragments (a receiver's token often rides in one)."""
    text = _QUERY.sub(r"\1", _USERINFO.sub(r"\1", " ".join(text.split())))
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _malformed(exc: HttpProcessingError) -> str:
    """What was wrong with a response aiohttp could not parse: the lines of its message before
    the quoted bytes, e.g. "invalid header token" or "bad status line: invalid status code"
    (a body shorter than announced is "incomplete")."""
    reason: list[str] = []
    for line in str(exc.message).splitlines():
        if not line.strip():
            if reason:
                break
            continue
        part = line.strip().rstrip(":.")
        reason.append(part[:1].lower() + part[1:])
    what = "incomplete" if isinstance(exc, PayloadEncodingError) else "malformed"  # the body broke off
    return f"{what} HTTP response from the receiver: " + (": ".join(reason) or type(exc).__name__)


def _describe(exc: BaseException, timeout_s: float) -> str:
    """A short, secret-free description on one line. httpx-aiohttp maps every connection failure
    to ``ConnectTimeout``, so the root cause decides, not the httpx class."""
    return one_line(_description(exc, timeout_s))


def _description(exc: BaseException, timeout_s: float) -> str:
    forbidden = find_forbidden_address_error(exc)
    if forbidden is not None:  # its message already says "refused: ..."
        reason = str(forbidden)
        return reason if reason.startswith("refused: ") else f"refused: {reason}"
    root = _root(exc)
    if isinstance(exc, TimeoutError) or isinstance(root, TimeoutError | aiohttp.ServerTimeoutError):
        return f"timeout: no complete answer within {timeout_s:g}s"
    if isinstance(root, HttpProcessingError):  # its code (400) is aiohttp's verdict, not the receiver's
        return _malformed(root)
    if isinstance(root, aiohttp.ServerDisconnectedError):
        return "connection closed by the receiver before a complete answer"
    if isinstance(root, aiohttp.ClientSSLError | ssl.SSLError):
        return "TLS error: " + str(root)
    if isinstance(root, aiohttp.ClientConnectorError):
        return f"connection failed: {root.os_error.strerror or type(root.os_error).__name__}"
    if isinstance(root, aiohttp.ClientOSError):  # e.g. reset by the receiver mid-answer
        return f"connection failed: {root.strerror or type(root).__name__}"
    return f"{type(root).__name__}: {root}"


_urls: dict[str, httpx.URL] = {}


def _url(text: str) -> httpx.URL:
    """Parsed once per endpoint URL (a bounded cache)."""
    url = _urls.get(text)
    if url is None:
        if len(_urls) > 10_000:
            _urls.clear()
        url = _urls[text] = httpx.URL(text)
    return url


async def send(
    transport: httpx.AsyncBaseTransport, url: str, headers: dict[str, str], body: bytes, timeout_s: float
) -> AttemptResult:
    """POST ``body`` to ``url``; the whole exchange (connect, send, headers, excerpt) within ``timeout_s``.

    The request goes straight to the httpx transport: no client-side redirects (the
    transport never follows them), no cookie jar, no auth or proxy from the environment.
    """
    started = time.perf_counter()
    limits = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    request = httpx.Request("POST", _url(url), headers=headers, content=body, extensions={"timeout": limits})
    try:
        async with asyncio.timeout(timeout_s):
            response = await transport.handle_async_request(request)
            try:
                excerpt = b""
                async for chunk in response.aiter_raw():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
            finally:
                await response.aclose()
            elapsed = int((time.perf_counter() - started) * 1000)
            return AttemptResult(
                status_code=response.status_code,
                duration_ms=elapsed,
                excerpt=excerpt[:EXCERPT_BYTES].decode("utf-8", "replace") or None,
                retry_after=response.headers.get("retry-after"),
            )
    except Exception as exc:  # noqa: BLE001 - every failure is an outcome, not a crash
        return AttemptResult(
            status_code=None,
            duration_ms=int((time.perf_counter() - started) * 1000),
            error=_describe(exc, timeout_s),
        )
