"""The TLS receiver of bench/realtraffic.py: one process, one certificate, many loopback hosts.

``make_certs`` writes a test CA and one server certificate (ECDSA P-256) whose IP SANs name the
control address 127.0.0.1 and the receiver hosts 127.0.0.2 ... (``host_addresses``). ``main`` binds
one TLS socket per address on the same port and serves them all from one uvicorn server (uvloop,
httptools, no logs). The senders trust the CA through ``SSL_CERT_FILE``.

Path-based classes, the last segment names the endpoint:

* ``POST /fast/{ep}``   200 after 20-150 ms (uniform)
* ``POST /slow/{ep}``   200 after 1-2 s (uniform)
* ``POST /fail/{ep}``   500 at once
* ``POST /hold/{ep}``   never answers: holds the request until the client gives up

Per class it counts requests, distinct (endpoint, ``webhook-id``) pairs and the first and last
arrival; with ``{"track_latency": true}`` it records ``arrival - data.sent_at`` of each first
``fast`` arrival. Per local address (host) it counts the connections it accepted (uvicorn's protocol
sees a connection once its TLS handshake has completed, so accepted connections = full TLS
handshakes) and the most it had open at once. ``GET /stats`` (``?latency=1`` adds the latencies),
``POST /reset``, ``GET /healthz``; the harness calls them on 127.0.0.1, which the per-host figures
leave out.

Run: ``python -m bench.tls_receiver --port 9443 --cert-dir DIR --hosts 40``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.receiver import ModeStats as ClassStats  # the same counts, per endpoint class here
from bench.receiver import read_body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONTROL_HOST = "127.0.0.1"
DELAYS_S = {"fast": (0.020, 0.150), "slow": (1.0, 2.0)}
CLASSES = ("fast", "slow", "fail", "hold")


def host_addresses(n: int) -> list[str]:
    """The receiver hosts: 127.0.0.2, 127.0.0.3, ... (n of them, at most 250)."""
    if not 1 <= n <= 250:
        raise ValueError("between 1 and 250 hosts")
    return [f"127.0.0.{2 + i}" for i in range(n)]


@dataclass(frozen=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path, addresses: list[str], days: int = 2) -> CertFiles:
    """A test CA and one server certificate for ``addresses`` (plus the control address) in
    ``directory``: ``ca.pem``, ``server.pem``, ``server-key.pem``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhooks bench test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ips = [ipaddress.ip_address(a) for a in dict.fromkeys([CONTROL_HOST, *addresses])]
    leaf_usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhooks bench receiver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip) for ip in ips]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = CertFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files.key.write_bytes(pem_key)
    files.key.chmod(0o600)
    return files


@dataclass
class State:
    classes: dict[str, ClassStats] = field(default_factory=lambda: {c: ClassStats() for c in CLASSES})
    seen: set[tuple[str, str]] = field(default_factory=set)
    latency: list[float] = field(default_factory=list)
    track_latency: bool = False
    accepted: dict[str, int] = field(default_factory=dict)  # host -> connections accepted (handshakes)
    max_open: dict[str, int] = field(default_factory=dict)  # host -> most connections open at once


STATE = State()
OPEN: dict[str, int] = {}  # host -> connections open now (outlives a reset)


def connection_opened(host: str) -> None:
    OPEN[host] = OPEN.get(host, 0) + 1
    STATE.accepted[host] = STATE.accepted.get(host, 0) + 1
    STATE.max_open[host] = max(STATE.max_open.get(host, 0), OPEN[host])


def connection_closed(host: str) -> None:
    OPEN[host] = OPEN.get(host, 1) - 1


def _header(scope: Scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return ""


async def _respond(send: Send, status: int, body: bytes = b"{}") -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


def _record(cls: str, endpoint: str, scope: Scope, body: bytes) -> None:
    now = time.time()
    stats = STATE.classes[cls]
    stats.requests += 1
    pair = (endpoint, _header(scope, b"webhook-id"))
    if pair in STATE.seen:
        return
    STATE.seen.add(pair)
    stats.unique += 1
    stats.first = stats.first or now
    stats.last = now
    if STATE.track_latency and cls == "fast":
        try:
            STATE.latency.append(now - float(orjson.loads(body)["data"]["sent_at"]))
        except (ValueError, KeyError, TypeError):
            pass


def stats(with_latency: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "now": time.time(),
        "classes": {c: vars(s) for c, s in STATE.classes.items()},
        "accepted": {h: n for h, n in STATE.accepted.items() if h != CONTROL_HOST},
        "max_open": {h: n for h, n in STATE.max_open.items() if h != CONTROL_HOST},
        "open": {h: n for h, n in OPEN.items() if h != CONTROL_HOST},
    }
    if with_latency:
        out["latency"] = STATE.latency
    return out


def reset(config: dict[str, Any]) -> None:
    global STATE
    STATE = State(track_latency=bool(config.get("track_latency", False)))
    STATE.max_open = dict(OPEN)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    parts = path.strip("/").split("/")
    if method == "POST" and len(parts) == 2 and parts[0] in CLASSES:
        cls, endpoint = parts
        _record(cls, endpoint, scope, await read_body(receive))
        if cls in DELAYS_S:
            await asyncio.sleep(random.uniform(*DELAYS_S[cls]))
            await _respond(send, 200)
        elif cls == "fail":
            await _respond(send, 500, b'{"error":"failing on purpose"}')
        else:  # hold: until the client disconnects (or the server stops)
            while (await receive())["type"] != "http.disconnect":
                pass
    elif path == "/stats" and method == "GET":
        await _respond(send, 200, orjson.dumps(stats(b"latency=1" in scope.get("query_string", b""))))
    elif path == "/reset" and method == "POST":
        body = await read_body(receive)
        reset(orjson.loads(body) if body.strip() else {})
        await _respond(send, 200)
    elif path == "/healthz":
        await _respond(send, 200, b'{"ok":true}')
    else:
        await _respond(send, 404, b'{"error":"unknown route"}')


def counting_protocol() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, counting connections per local address."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CountingProtocol(HttpToolsProtocol):
        _host = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._host = self.server[0] if self.server else "?"
            connection_opened(self._host)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            connection_closed(self._host)

    return CountingProtocol


def listen(addresses: list[str], port: int) -> list[socket.socket]:
    socks = []
    for address in addresses:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(4096)
        sock.set_inheritable(True)
        socks.append(sock)
    return socks


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-dir", type=Path, required=True, help="with server.pem and server-key.pem")
    parser.add_argument("--hosts", type=int, default=40)
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=counting_protocol(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
        timeout_keep_alive=30,
        ssl_certfile=str(args.cert_dir / "server.pem"),
        ssl_keyfile=str(args.cert_dir / "server-key.pem"),
    )
    uvicorn.Server(config).run(sockets=listen([CONTROL_HOST, *host_addresses(args.hosts)], args.port))


if __name__ == "__main__":
    main()
