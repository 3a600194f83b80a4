"""The retry rules and error reading of :mod:`hookyard_client.core`, step by step (no network).

:func:`exchange` is sans-IO: these tests drive it with :func:`drive` as the blocking transport does,
answering each ``Send`` with the next outcome and recording the waits instead of sleeping.
"""

import random
from typing import Any

import httpx
import pytest

from hookyard_client import ApiConnectionError, ApiError
from hookyard_client.core import Call, Outcome, RetryPolicy, Send, Session, drive, exchange


def session(**policy: Any) -> Session:
    return Session("http://api.test/", "whk_x", policy=RetryPolicy(**policy), rng=random.Random(7))


def play(call: Call[Any], outcomes: list[Outcome], s: Session | None = None) -> tuple[Any, list[float]]:
    """Run ``call`` against ``outcomes`` in order: its result and the waits it asked for."""
    waits: list[float] = []
    result = drive(exchange(call, s or session()), lambda _: outcomes.pop(0), waits.append)
    assert not outcomes, "every outcome was used"
    return result, waits


def safe(method: str = "GET", path: str = "/v1/x") -> Call[Any]:
    return Call(method, path, lambda body: body, retry_safe=True)


def unsafe() -> Call[Any]:
    return Call("POST", "/v1/tenants", lambda body: body)


def ok(body: Any = None) -> httpx.Response:
    return httpx.Response(200, json=body) if body is not None else httpx.Response(204)


def error(status: int, code: str = "limit_exceeded", retry_after: str | None = None) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after else {}
    return httpx.Response(status, json={"error": code, "message": "m"}, headers=headers)


DROPPED = httpx.RemoteProtocolError("Server disconnected without sending a response.")
REFUSED = httpx.ConnectError("[Errno 111] Connection refused")


def test_503_and_429_with_retry_after_wait_at_least_that_long() -> None:
    result, waits = play(safe(), [error(503, "storage_full", "7"), error(429, retry_after="2"), ok({"a": 1})])
    assert result == {"a": 1}
    assert waits[0] >= 7 and waits[1] >= 2


def test_backoff_doubles_within_jitter_and_is_capped() -> None:
    s = session(max_retries=6, backoff_s=1.0, max_backoff_s=4.0)
    _, waits = play(safe(), [DROPPED] * 6 + [ok({})], s)
    caps = [1, 2, 4, 4, 4, 4]
    assert all(cap / 2 <= w <= cap for w, cap in zip(waits, caps, strict=True)), waits


def test_retries_stop_after_max_retries_with_the_last_answer() -> None:
    with pytest.raises(ApiError) as failed:
        play(safe(), [error(503, "storage_unavailable")] * 3, session(max_retries=2))
    assert (failed.value.status, failed.value.code) == (503, "storage_unavailable")


def test_unsafe_calls_are_not_retried_on_429_503_or_a_dropped_connection() -> None:
    with pytest.raises(ApiError):
        play(unsafe(), [error(429, retry_after="1")])
    with pytest.raises(ApiConnectionError) as dropped:
        play(unsafe(), [DROPPED])
    assert dropped.value.__cause__ is DROPPED
    assert str(dropped.value).startswith("POST http://api.test/v1/tenants: RemoteProtocolError: Server disc")


def test_a_connection_never_made_is_retried_for_every_call() -> None:
    result, waits = play(unsafe(), [REFUSED, ok({"id": "ten_1"})])
    assert result == {"id": "ten_1"} and len(waits) == 1


def test_other_errors_are_never_retried() -> None:
    for status, code in [(400, "http_error"), (404, "not_found"), (409, "conflict"), (500, "internal")]:
        with pytest.raises(ApiError) as failed:
            play(safe(), [error(status, code)])
        assert failed.value.status == status


def test_retry_after_beyond_the_allowed_wait_raises_at_once() -> None:
    with pytest.raises(ApiError) as failed:
        play(safe(), [error(429, retry_after="120")], session(max_retry_after_s=60))
    assert failed.value.retry_after_s == 120


def test_delete_that_may_have_been_applied_accepts_a_404() -> None:
    gone, _ = play(safe("DELETE"), [DROPPED, error(404, "not_found")])
    assert gone is None
    with pytest.raises(ApiError):  # refused: the request never left, so the 404 is real
        play(safe("DELETE"), [REFUSED, error(404, "not_found")])
    with pytest.raises(ApiError):
        play(safe("DELETE"), [error(404, "not_found")])


def test_error_answers_that_are_not_the_api_json_shape() -> None:
    with pytest.raises(ApiError) as proxy_page:
        play(safe(), [httpx.Response(502, text="<html>Bad Gateway</html>")])
    assert (proxy_page.value.status, proxy_page.value.code) == (502, "http_error")
    assert "Bad Gateway" in proxy_page.value.message
    with pytest.raises(ApiError) as garbled:
        play(safe(), [httpx.Response(200, text="not json")])
    assert garbled.value.code == "unexpected_response"


def test_validation_details_are_kept() -> None:
    body = {"error": "invalid", "message": "url: bad", "details": [{"field": "url", "message": "bad"}]}
    with pytest.raises(ApiError) as invalid:
        play(safe(), [httpx.Response(422, json=body)])
    assert invalid.value.details == [{"field": "url", "message": "bad"}]


def test_the_request_carries_credentials_and_the_acting_tenant() -> None:
    s = Session("http://api.test/", "admin-token", tenant_id="ten_1")
    tenant_scoped = next(exchange(Call("GET", "/v1/endpoints", lambda b: b, params={"limit": 5}), s))
    assert isinstance(tenant_scoped, Send)
    assert tenant_scoped.url == "http://api.test/v1/endpoints"
    assert tenant_scoped.params == {"limit": 5, "tenant_id": "ten_1"}
    assert tenant_scoped.headers["authorization"] == "Bearer admin-token"
    admin_route = next(exchange(Call("GET", "/v1/tenants", lambda b: b), s))
    assert isinstance(admin_route, Send) and "tenant_id" not in admin_route.params
