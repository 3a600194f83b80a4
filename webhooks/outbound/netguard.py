"""SSRF protection for endpoint URLs.

Two gates keep deliveries away from the platform's own network:

* **Registration time** -- :func:`check_target_url` validates an endpoint URL
  without any I/O: scheme, credentials, port, length, characters, and the host
  when it is a literal address in any spelling a resolver accepts
  (:func:`webhooks.outbound.addresses.parse_host_as_ip`) or an obviously local name (``localhost``,
  ``*.internal``...). Hostnames are *not* resolved here.
* **Connect time** -- :func:`make_guarded_session` builds the
  :class:`aiohttp.ClientSession` the delivery worker hands to
  ``httpx_aiohttp.AiohttpTransport(client=...)``. Its connector resolves names
  through :class:`GuardedResolver`, re-checks literal-IP hosts (which aiohttp
  never sends to the resolver), and finally checks every address right before
  a socket is created. aiohttp connects only to the addresses that survived, so
  DNS rebinding between the check and the connect is not possible.

:func:`webhooks.outbound.addresses.forbidden_reason` is the single policy both gates share:
it says why an address is not a public unicast destination, or returns ``None``.

A refusal at connect time raises :class:`ForbiddenAddressError`, which is both
an :class:`~webhooks.errors.InvalidTarget` and an :class:`OSError`. aiohttp wraps
it in ``aiohttp.ClientConnectorError`` (``ClientConnectorDNSError`` for the
resolution step) and httpx-aiohttp turns that into an ``httpx.TransportError``
subclass whose message contains ours, e.g. ``Cannot connect to host
localhost:8080 ssl:default [refused: localhost resolves only to forbidden
addresses (127.0.0.1: loopback; ::1: loopback)]``. The original error stays
reachable through ``__cause__`` (see :func:`find_forbidden_address_error`).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from webhooks.errors import InvalidTarget
from webhooks.outbound.addresses import DOT_VARIANTS, forbidden_reason, parse_host_as_ip

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

__all__ = [
    "MAX_URL_LENGTH",
    "ForbiddenAddressError",
    "GuardedConnector",
    "GuardedResolver",
    "check_target_url",
    "find_forbidden_address_error",
    "make_guarded_connector",
    "make_guarded_session",
]

MAX_URL_LENGTH: Final = 2048

# The guard for literal-IP hosts overrides this (private) aiohttp hook; fail at
# import rather than silently lose the check if a future aiohttp renames it.
if not callable(getattr(aiohttp.TCPConnector, "_resolve_host", None)):  # pragma: no cover
    raise ImportError(
        "webhooks.outbound.netguard needs aiohttp.TCPConnector._resolve_host (aiohttp 3.10 - 3.x)"
    )


# --------------------------------------------------------------------------- #
# Registration-time check
# --------------------------------------------------------------------------- #

_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOCAL_SUFFIXES: Final = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
# An idle kept-alive connection is closed after this long: under common receivers' own idle
# timeouts (Node.js and uvicorn close at 5 s), so a POST (which aiohttp never retries) seldom
# goes out on a connection the receiver is closing; a busy host keeps its connections busy.
KEEPALIVE_S = 4.0
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


# Said with every refusal of a private, loopback or local target: the setting that allows them.
ALLOW_HINT = "WEBHOOKS_ALLOW_PRIVATE_TARGETS=true allows private and loopback targets (development)"


def _refuse(message: str) -> InvalidTarget:
    return InvalidTarget(f"invalid endpoint URL: {message}")


def _hosts_seen_by_other_parsers(url: str) -> list[str]:
    """The host as httpx (in the worker) and yarl (inside aiohttp) read ``url``.

    Parser disagreements must not open a hole, so the caller checks every
    reading; a URL either of them rejects is refused.
    """
    try:
        hosts = [httpx.URL(url).host, yarl.URL(url).raw_host]
    except (ValueError, httpx.InvalidURL) as exc:
        raise _refuse("it could not be parsed") from exc
    return [host for host in hosts if host]


def _check_host(host: str, *, allow_private: bool) -> None:
    ip = parse_host_as_ip(host)
    if ip is not None:
        reason = forbidden_reason(ip)
        if reason is not None and not allow_private:
            raise _refuse(f"host {host!r} is not a public address ({reason}); {ALLOW_HINT}")
        bare = host[1:-1] if host.startswith("[") else host
        if isinstance(ip, ipaddress.IPv4Address) and bare != str(ip):
            raise _refuse(f"host {host!r} is an unusual spelling of the IPv4 address {ip}; write it as {ip}")
        return
    if "%" in host:
        raise _refuse(f"host {host!r} contains percent-encoding")
    name = unicodedata.normalize("NFKC", host).translate(DOT_VARIANTS).casefold().rstrip(".")
    if not name:
        raise _refuse("it has no host")
    if not allow_private:
        if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
            raise _refuse(f"host {host!r} is a local name; {ALLOW_HINT}")
        if "." not in name:
            raise _refuse(f"host {host!r} is not a fully qualified domain name; {ALLOW_HINT}")
    if name.isascii():
        labels = name.split(".")
        if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise _refuse(f"host {host!r} is not a valid hostname")


def check_target_url(url: str, *, allow_private: bool, https_only: bool = False) -> str:
    """Validate an endpoint URL at registration time and return it unchanged.

    Raises :class:`~webhooks.errors.InvalidTarget` with a message starting
    ``"invalid endpoint URL: "`` when:

    * the URL is longer than :data:`MAX_URL_LENGTH` characters, or contains
      whitespace, control characters or a backslash;
    * the scheme is not ``http``/``https`` (only ``https`` when ``https_only``);
    * it carries credentials (``user:password@``); the message never repeats
      them, nor the rest of the URL;
    * it has no host, or an invalid port (non-numeric, 0 or above 65535);
    * the host is a literal address, in any spelling :func:`parse_host_as_ip`
      recognises, that :func:`forbidden_reason` refuses -- unless
      ``allow_private``;
    * the host is a non-canonical IPv4 spelling (``127.1``, ``0x7f000001``...)
      even of a public address, since aiohttp refuses to connect to those;
    * unless ``allow_private``: the host is a local name (``localhost``,
      ``*.localhost``, ``localhost.localdomain``, ``*.internal``, ``*.local``,
      ``*.localdomain``, ``*.home.arpa``) or a single label (``redis``);
    * the host is not a syntactically valid hostname.

    Hostnames are not resolved here (no I/O); the connect-time guard in
    :func:`make_guarded_session` checks the addresses they resolve to.
    """
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"it is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in url):
        raise _refuse("it contains whitespace or control characters")
    if "\\" in url:
        raise _refuse("it contains a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _refuse("it could not be parsed") from exc
    scheme = parts.scheme.lower()
    allowed = ("https",) if https_only else ("http", "https")
    if scheme not in allowed:
        wanted = "https" if https_only else "http or https"
        shown = repr(scheme[:16]) if scheme else "none"
        raise _refuse(f"the scheme must be {wanted} (got {shown})")
    if "@" in parts.netloc:
        raise _refuse("it must not contain credentials (user:password@)")
    if not parts.hostname:
        raise _refuse("it has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise _refuse("the port is invalid") from exc
    if port == 0:
        raise _refuse("the port is invalid")
    _check_host(parts.hostname, allow_private=allow_private)
    for host in _hosts_seen_by_other_parsers(url):
        if host != parts.hostname:
            _check_host(host, allow_private=allow_private)
    return url


# --------------------------------------------------------------------------- #
# Connect-time guard
# --------------------------------------------------------------------------- #


class ForbiddenAddressError(InvalidTarget, OSError):
    """A connection was refused because the target address is not public.

    Both an :class:`~webhooks.errors.InvalidTarget` (for domain code) and an
    :class:`OSError` (so aiohttp reports it as a connection error with our
    message instead of crashing the request machinery). ``str()`` is the
    message alone; ``errno`` is ``EACCES``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(errno.EACCES, message)

    def __str__(self) -> str:
        return str(self.strerror)


def find_forbidden_address_error(exc: BaseException) -> ForbiddenAddressError | None:
    """Walk ``exc``'s cause/context chain (and aiohttp's ``os_error``) for a refusal."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ForbiddenAddressError):
            return current
        inner = getattr(current, "os_error", None)
        if isinstance(inner, ForbiddenAddressError):
            return inner
        current = current.__cause__ or current.__context__
    return None


def _address_reason(address: str) -> str | None:
    """:func:`forbidden_reason` for a resolver's numeric address; unparsable fails closed."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not a numeric address"
    return forbidden_reason(ip)


def _filter_results(host: str, results: list[ResolveResult]) -> list[ResolveResult]:
    """Keep the public results; raise :class:`ForbiddenAddressError` if none is left."""
    kept: list[ResolveResult] = []
    refused: dict[str, str] = {}
    for result in results:
        reason = _address_reason(result["host"])
        if reason is None:
            kept.append(result)
        else:
            refused.setdefault(result["host"], reason)
    if kept or not results:
        return kept
    if len(refused) == 1 and parse_host_as_ip(host) is not None:
        (reason,) = refused.values()
        raise ForbiddenAddressError(f"refused: {host} is not a public address ({reason}); {ALLOW_HINT}")
    shown = "; ".join(f"{addr}: {reason}" for addr, reason in list(refused.items())[:4])
    more = f"; and {len(refused) - 4} more" if len(refused) > 4 else ""
    raise ForbiddenAddressError(
        f"refused: {host} resolves only to forbidden addresses ({shown}{more}); {ALLOW_HINT}"
    )


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops every address :func:`forbidden_reason` refuses.

    Wraps ``inner`` (default: aiohttp's :class:`aiohttp.ThreadedResolver`,
    which calls ``getaddrinfo`` in a thread). ``resolve`` returns only the
    public results, in their original order; when the name resolves only to
    forbidden addresses it raises :class:`ForbiddenAddressError` (an
    ``OSError``), which aiohttp reports as ``ClientConnectorDNSError``.
    Resolution failures of ``inner`` propagate unchanged. With
    ``allow_private=True`` it is a transparent wrapper.

    Must be created while an event loop runs (as aiohttp's resolvers).
    """

    def __init__(self, *, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner: AbstractResolver = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and return only the addresses deliveries may go to."""
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        return _filter_results(host, results)

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


def _guarded_socket_factory(addr_info: tuple[Any, ...]) -> socket.socket:
    """Last gate: refuse to create a socket for a forbidden address (public aiohttp hook)."""
    family, type_, proto, _, address = addr_info
    host = str(address[0])
    reason = _address_reason(host)
    if reason is not None:
        raise ForbiddenAddressError(f"refused: connection to {host} is not allowed ({reason}); {ALLOW_HINT}")
    return socket.socket(family=family, type=type_, proto=proto)


class GuardedConnector(aiohttp.TCPConnector):
    """A :class:`aiohttp.TCPConnector` that only connects to public addresses.

    Three layers, each raising :class:`ForbiddenAddressError`:

    1. names go through :class:`GuardedResolver`;
    2. ``_resolve_host`` is overridden because aiohttp answers literal-IP
       hosts itself without calling the resolver (and serves a DNS cache);
       every address it returns is re-checked;
    3. a ``socket_factory`` refuses to create a socket for a forbidden
       address, whatever path produced it.

    With ``allow_private=True`` none of this applies. Must be created while an
    event loop runs.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        limit: int = 100,
        limit_per_host: int = 0,
        keepalive_s: float = KEEPALIVE_S,
        ttl_dns_cache: int | None = 10,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        super().__init__(
            limit=limit,
            limit_per_host=limit_per_host,
            keepalive_timeout=keepalive_s,
            ttl_dns_cache=ttl_dns_cache,
            resolver=GuardedResolver(allow_private=allow_private, inner=resolver),
            socket_factory=None if allow_private else _guarded_socket_factory,
        )
        # aiohttp never closes a resolver it was handed; this wrapper is ours
        # (its close() also closes ``resolver``, so only when we made that one).
        self._resolver_owner = resolver is None

    async def _get(self, key: Any, traces: list[Any]) -> Any:
        # aiohttp hands out the idle connection idle the longest (FIFO), which spreads a modest rate
        # over every pooled connection: each idles past the keep-alive and is closed, then reopened
        # (a TLS handshake each time), and the one reused is the likeliest to be closing at the
        # receiver's end. The most recently released first (LIFO) keeps as few connections warm as
        # the rate needs; the connector's cleanup closes the others once idle past the keep-alive.
        conns = self._conns.get(key)
        if conns is not None and len(conns) > 1:
            conns.rotate(1)
        return await super()._get(key, traces)

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Trace] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        if self._allow_private:
            return results
        return _filter_results(host, results)


def make_guarded_connector(
    allow_private: bool, *, limit: int = 100, limit_per_host: int = 0
) -> GuardedConnector:
    """A :class:`GuardedConnector`; ``limit`` caps simultaneous connections (0: none)."""
    return GuardedConnector(allow_private=allow_private, limit=limit, limit_per_host=limit_per_host)


def make_guarded_session(
    *, allow_private: bool, limit: int, timeout_s: float, limit_per_host: int = 0
) -> aiohttp.ClientSession:
    """The aiohttp session for deliveries, for ``AiohttpTransport(client=...)``.

    * connects only to public addresses (see :class:`GuardedConnector`)
      unless ``allow_private``;
    * ignores proxy environment variables and ``.netrc`` (``trust_env=False``);
    * keeps no cookies (a :class:`aiohttp.DummyCookieJar`), so one receiver's
      cookies never reach another tenant's endpoint on the same host;
    * follows no redirects by itself: httpx-aiohttp passes
      ``allow_redirects=False`` and httpx decides (the worker keeps
      ``follow_redirects=False``);
    * ``timeout_s`` is the total timeout for requests made on the session
      directly. httpx-aiohttp replaces it per request with httpx's connect,
      read and pool timeouts (it has no total), so the worker should also
      bound each attempt, e.g. with :func:`asyncio.timeout`.
    * ``limit_per_host`` caps the connections open to one host (0: none; the worker waits for
      a slot before it asks, :mod:`webhooks.outbound.hostslots`); an idle connection is kept
      for :data:`KEEPALIVE_S`.

    Must be called while an event loop runs; the caller closes the session
    (``AiohttpTransport.aclose`` does).
    """
    connector = make_guarded_connector(allow_private, limit=limit, limit_per_host=limit_per_host)
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=True,
        timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
