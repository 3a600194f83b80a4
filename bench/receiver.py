"""A fast webhook receiver for the benchmarks: a bare ASGI app on uvicorn (uvloop + httptools, no logs).

Path-based modes, the last path segment names the endpoint:

* ``POST /instant/{endpoint}``          200 at once
* ``POST /slow/{endpoint}?ms=100``      200 after ``ms`` milliseconds
* ``POST /fail/{endpoint}``             500 at once
* ``POST /blackhole/{endpoint}``        never answers: holds the request until the client gives up

Per request it records the arrival time and the ``webhook-id`` header; the first arrival of each
(endpoint, webhook-id) pair counts as a delivery, later ones as duplicates. When latency tracking is on
(``POST /reset {"track_latency": true}``) it parses the body and records ``arrival - data.sent_at``
(end-to-end latency, the producer stamps ``sent_at`` when it posts the event). When the harness
registered an endpoint's secret (``POST /reset {"secrets": {"<endpoint>": "whsec_..."}}``) it verifies the
Standard Webhooks signature with the ``standardwebhooks`` package; keep both off for throughput runs.
With ``{"track_requests": true}`` it also logs every request (repeats too) as ``[arrival, "mode/ep",
webhook-id, first?, data.sent_at or null, orphaned?]``, returned by ``GET /stats?requests=1``;
``orphaned`` marks a ``slow`` request whose client hung up before the answer (its worker died). The
recovery scenario reads it: which deliveries a killed worker held, and when they were re-sent.

``GET /stats`` (``?latency=1`` adds the raw latency arrays, ``?requests=1`` the request log),
``POST /reset``, ``GET /healthz``.

Run: ``python -m bench.receiver --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

try:  # orjson is a project dependency; fall back to json if it is missing
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()


try:  # optional: only needed when the harness registers secrets
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError:  # pragma: no cover
    Webhook = None  # type: ignore[assignment,misc]

    class WebhookVerificationError(Exception):  # type: ignore[no-redef]
        pass


MODES = ("instant", "slow", "fail", "blackhole")


@dataclass
class ModeStats:
    requests: int = 0
    unique: int = 0
    first: float | None = None
    last: float | None = None


@dataclass
class State:
    modes: dict[str, ModeStats] = field(default_factory=dict)
    per_endpoint: dict[str, list[int]] = field(default_factory=dict)  # "mode/ep" -> [requests, unique]
    seen: set[tuple[str, str]] = field(default_factory=set)
    latency: dict[str, list[float]] = field(default_factory=dict)
    track_latency: bool = False
    track_requests: bool = False
    requests: list[list[Any]] = field(default_factory=list)
    verifiers: dict[str, Any] = field(default_factory=dict)
    verified: int = 0
    bad_signatures: int = 0
    open_blackhole: int = 0
    max_open_blackhole: int = 0
    anonymous: int = 0


STATE = State()

_HDR_JSON = [(b"content-type", b"application/json")]


async def read_body(receive: Receive) -> bytes:
    """The whole request body of an ASGI request (every ``http.request`` message)."""
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": _HDR_JSON})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


def _query_ms(scope: Scope, default: float = 100.0) -> float:
    qs: bytes = scope.get("query_string", b"")
    for part in qs.split(b"&"):
        if part.startswith(b"ms="):
            try:
                return float(part[3:])
            except ValueError:
                return default
    return default


def _record(scope: Scope, mode: str, endpoint: str, body: bytes) -> list[Any] | None:
    """Count the request; returns its request-log entry when the log is on."""
    now = time.time()
    st = STATE
    ms = st.modes.get(mode)
    if ms is None:
        ms = st.modes[mode] = ModeStats()
    ms.requests += 1
    key = f"{mode}/{endpoint}"
    per = st.per_endpoint.get(key)
    if per is None:
        per = st.per_endpoint[key] = [0, 0]
    per[0] += 1
    msg_id = _header(scope, b"webhook-id")
    if msg_id is None:
        st.anonymous += 1
        msg_id = f"anon-{st.anonymous}"
    pair = (key, msg_id)
    entry: list[Any] | None = None
    if st.track_requests:
        entry = [now, key, msg_id, pair not in st.seen, _sent_at(body), False]
        st.requests.append(entry)
    if pair in st.seen:
        return entry
    st.seen.add(pair)
    ms.unique += 1
    per[1] += 1
    if ms.first is None:
        ms.first = now
    ms.last = now
    verifier = st.verifiers.get(endpoint)
    if verifier is not None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            verifier.verify(body, headers, json_parse=False)
            st.verified += 1
        except (ValueError, KeyError, TypeError, WebhookVerificationError):
            st.bad_signatures += 1
    if st.track_latency:
        sent_at = _sent_at(body)
        if sent_at is not None:
            st.latency.setdefault(mode, []).append(now - sent_at)
    return entry


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _sent_at(body: bytes) -> float | None:
    try:
        doc = _loads(body)
        data = doc.get("data", doc)  # the envelope {"type", "timestamp", "data"} or a bare payload
        return float(data["sent_at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _stats(with_latency: bool, with_requests: bool = False) -> dict[str, Any]:
    st = STATE
    out: dict[str, Any] = {
        "now": time.time(),
        "modes": {m: vars(s) for m, s in st.modes.items()},
        "endpoints": {k: {"requests": v[0], "unique": v[1]} for k, v in st.per_endpoint.items()},
        "verified": st.verified,
        "bad_signatures": st.bad_signatures,
        "open_blackhole": st.open_blackhole,
        "max_open_blackhole": st.max_open_blackhole,
    }
    if with_latency:
        out["latency"] = st.latency
    if with_requests:
        out["requests"] = st.requests
    return out


def _reset(config: dict[str, Any]) -> None:
    global STATE
    open_now = STATE.open_blackhole
    STATE = State(
        track_latency=bool(config.get("track_latency", False)),
        track_requests=bool(config.get("track_requests", False)),
    )
    STATE.open_blackhole = open_now
    secrets = config.get("secrets") or {}
    if secrets:
        if Webhook is None:
            raise RuntimeError("signature checks need the standardwebhooks package")
        STATE.verifiers = {ep: Webhook(secret) for ep, secret in secrets.items()}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    method: str = scope["method"]
    parts = path.strip("/").split("/")
    if method == "POST" and len(parts) == 2 and parts[0] in MODES:
        mode, endpoint = parts
        body = await read_body(receive)
        entry = _record(scope, mode, endpoint, body)
        if mode == "instant":
            await _respond(send, 200, b"{}")
        elif mode == "slow":
            if entry is None:
                await asyncio.sleep(_query_ms(scope) / 1000.0)
            else:  # the request log is on: notice a client that goes away while we wait
                try:
                    await asyncio.wait_for(_wait_disconnect(receive), _query_ms(scope) / 1000.0)
                    entry[5] = True
                    return
                except TimeoutError:
                    pass
            await _respond(send, 200, b"{}")
        elif mode == "fail":
            await _respond(send, 500, b'{"error":"failing on purpose"}')
        else:  # blackhole: hold the request until the client disconnects (or the server stops)
            STATE.open_blackhole += 1
            STATE.max_open_blackhole = max(STATE.max_open_blackhole, STATE.open_blackhole)
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            finally:
                STATE.open_blackhole -= 1
        return
    if path == "/stats" and method == "GET":
        qs = scope.get("query_string", b"")
        await _respond(send, 200, _dumps(_stats(b"latency=1" in qs, b"requests=1" in qs)))
    elif path == "/reset" and method == "POST":
        body = await read_body(receive)
        _reset(_loads(body) if body.strip() else {})
        await _respond(send, 200, b"{}")
    elif path == "/healthz":
        await _respond(send, 200, b'{"ok":true}')
    else:
        await _respond(send, 404, b'{"error":"unknown route"}')


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
