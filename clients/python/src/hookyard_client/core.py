"""What every call does, whatever runs it: build the request, decide on retries, read the answer.

The core is sans-IO. A resource method describes its request as a :class:`Call` (or a
:class:`Listing` for a paged list); :func:`exchange` turns a call into a generator that
yields the next step — send this request (:class:`Send`) or wait this long (:class:`Wait`) —
and is sent back what sending gave (an ``httpx.Response`` or the ``httpx.TransportError``).
The sync and async transports (:mod:`hookyard_client.transport`) only perform those steps,
so both follow this one implementation of the retry rules and of error parsing.

Retry rules (the contract of every client method):

- A call is retried on a connection error, a timeout, a dropped connection, or an answer
  429 or 503, only when repeating it cannot do anything twice: ``GET``, ``DELETE``,
  ``PATCH`` (it sets fields to given values), and the ``POST`` calls that carry an
  ``Idempotency-Key`` or event ids (``events.send``, ``events.send_batch`` with ids,
  a dry-run replay). A failure to connect at all (nothing was sent) is retried for every call.
- The wait before retry ``n`` (0-based) is drawn from ``[c/2, c]`` with
  ``c = min(max_backoff_s, backoff_s * 2**n)`` (jitter keeps many clients from retrying in
  step), and never shorter than the ``Retry-After`` the answer asked for. An answer asking
  for more than ``max_retry_after_s`` is not waited for: it raises at once.
- A ``DELETE`` whose earlier attempt may have been applied (the connection broke after the
  request went out) and whose retry answers 404 has done its job: it returns normally.
- Once the retries are spent, the last answer raises :class:`~hookyard_client.ApiError`, or
  the last connection failure :class:`~hookyard_client.ApiConnectionError`.
"""

import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx

from hookyard_client._version import __version__
from hookyard_client.errors import ApiConnectionError, ApiError

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 503})
# Failures in which the request certainly never reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
USER_AGENT = f"hookyard-client/{__version__}"

Outcome = httpx.Response | httpx.TransportError


def query_value(value: Any) -> Any:
    """A query parameter as the API reads it: datetimes as ISO 8601 (naive ones taken as UTC)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def compact(**fields: Any) -> dict[str, Any]:
    """The fields that are not None, with datetimes as ISO 8601 (for query strings and JSON bodies)."""
    return {k: query_value(v) for k, v in fields.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and how to read its success answer (``parse`` gets the decoded JSON, or
    None for an empty body). ``retry_safe``: repeating it cannot do anything twice."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_safe: bool = False


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """A paged list route: ``GET path?params&limit=page_size&cursor=...`` answering
    ``{"data": [...], "next_cursor": ...}``; ``item`` reads one element of ``data``."""

    path: str
    item: Callable[[Any], T]
    params: Mapping[str, Any] = field(default_factory=dict)
    page_size: int | None = None

    def page(self, cursor: str | None) -> Call[tuple[list[T], str | None]]:
        params = {**self.params, **compact(limit=self.page_size, cursor=cursor)}
        return Call("GET", self.path, self._parse_page, params=params, retry_safe=True)

    def _parse_page(self, body: Any) -> tuple[list[T], str | None]:
        return [self.item(x) for x in body["data"]], body["next_cursor"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), jittered in ``[c/2, c]``."""
        cap = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(retry, 30))
        return rng.uniform(cap / 2, cap)


@dataclass(frozen=True, slots=True)
class Session:
    """What every request of one client shares: where, who, which tenant, how to retry."""

    base_url: str
    token: str
    tenant_id: str | None = None  # the admin token acting for this tenant
    timeout_s: float = 10.0  # per attempt, the whole exchange
    policy: RetryPolicy = RetryPolicy()
    rng: random.Random = field(default_factory=random.Random)

    def send_of(self, call: Call[Any]) -> "Send":
        params = dict(call.params)
        if self.tenant_id and not call.path.startswith("/v1/tenants"):
            params["tenant_id"] = self.tenant_id
        headers = {"authorization": f"Bearer {self.token}", "user-agent": USER_AGENT, **call.headers}
        url = self.base_url.rstrip("/") + call.path
        return Send(call.method, url, params, headers, call.json, self.timeout_s)


@dataclass(frozen=True, slots=True)
class Send:
    method: str
    url: str
    params: dict[str, Any]
    headers: dict[str, str]
    json: Any
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float


def retry_delay(call: Call[Any], outcome: Outcome, retry: int, session: Session, now_ms: int) -> float | None:
    """Seconds to wait before trying ``call`` again after ``outcome``, or None to stop here."""
    policy = session.policy
    if retry >= policy.max_retries:
        return None
    if isinstance(outcome, httpx.TransportError):
        if call.retry_safe or isinstance(outcome, NOT_SENT):
            return policy.backoff(retry, session.rng)
        return None
    if outcome.status_code not in RETRY_STATUSES or not call.retry_safe:
        return None
    asked = _retry_after(outcome, now_ms)
    if asked is not None and asked > policy.max_retry_after_s:
        return None
    return max(asked or 0.0, policy.backoff(retry, session.rng))


def exchange(call: Call[T], session: Session) -> Generator[Send | Wait, Outcome | None, T]:
    """The steps of one call, retries included; returns the parsed answer or raises (module doc)."""
    send = session.send_of(call)
    maybe_applied = False
    retry = 0
    while True:
        outcome = yield send
        assert outcome is not None, "a Send step is answered with its outcome"
        delay = retry_delay(call, outcome, retry, session, int(time.time() * 1000))
        if delay is None:
            return finish(call, outcome, maybe_applied, send.url)
        maybe_applied = maybe_applied or (
            isinstance(outcome, httpx.TransportError) and not isinstance(outcome, NOT_SENT)
        )
        retry += 1
        yield Wait(delay)


def drive(
    steps: Generator[Send | Wait, Outcome | None, T],
    perform: Callable[[Send], Outcome],
    sleep: Callable[[float], None],
) -> T:
    """Run the steps of :func:`exchange` with a blocking ``perform`` and ``sleep``; its result."""
    reply: Outcome | None = None
    try:
        while True:
            step = steps.send(reply)
            if isinstance(step, Wait):
                sleep(step.seconds)
                reply = None
            else:
                reply = perform(step)
    except StopIteration as done:
        result: T = done.value
        return result


def finish(call: Call[T], outcome: Outcome, maybe_applied: bool, url: str) -> T:
    """The parsed success answer, or the error that ``outcome`` stands for."""
    if isinstance(outcome, httpx.TransportError):
        reason = str(outcome) or "the connection failed"
        raise ApiConnectionError(f"{call.method} {url}: {type(outcome).__name__}: {reason}") from outcome
    status = outcome.status_code
    if status == 404 and call.method == "DELETE" and maybe_applied:
        return call.parse(None)  # an earlier attempt deleted it; the answer to that one was lost
    if not 200 <= status < 300:
        raise api_error(outcome, int(time.time() * 1000))
    try:
        return call.parse(outcome.json() if outcome.content else None)
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, or not the documented shape
        raise ApiError(status, "unexpected_response", f"{call.method} {call.path}: {exc}") from exc


def api_error(response: httpx.Response, now_ms: int) -> ApiError:
    """The :class:`ApiError` of an error answer (the API's ``{"error", "message", "details"}``)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    retry_after_s = _retry_after(response, now_ms)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        details = body.get("details")
        return ApiError(
            response.status_code,
            body["error"],
            str(body.get("message") or ""),
            details=details if isinstance(details, list) else None,
            retry_after_s=retry_after_s,
        )
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(response.status_code, "http_error", text, retry_after_s=retry_after_s)


def _retry_after(response: httpx.Response, now_ms: int) -> float | None:
    header = response.headers.get("retry-after")
    return parse_retry_after(header, now_ms) if header else None


def parse_retry_after(value: str, now_ms: int) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date); None if unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_ms / 1000)
