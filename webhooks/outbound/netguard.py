"""SSRF protection for endpoint URLs.

Two gates keep deliveries away from the platform's own network:

* **Registration time** -- :func:`check_target_url` validates an endpoint URL
  without any I/O: scheme, credentials, port, length, characters, and the host
  when it is a literal address in any spelling a resolver accepts
  (:func:`parse_host_as_ip`) or an obviously local name (``localhost``,
  ``*.internal``...). Hostnames are *not* resolved here.
* **Connect time** -- :func:`make_guarded_session` builds the
  :class:`aiohttp.ClientSession` the delivery worker hands to
  ``httpx_aiohttp.AiohttpTransport(client=...)``. Its connector resolves names
  through :class:`GuardedResolver`, re-checks literal-IP hosts (which aiohttp
  never sends to the resolver), and finally checks every address right before
  a socket is created. aiohttp connects only to the addresses that survived, so
  DNS rebinding between the check and the connect is not possible.

:func:`forbidden_reason` is the single policy both gates share: it says why an
address is not a public unicast destination, or returns ``None``.

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
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from webhooks.errors import InvalidTarget

if TYPE_CHECKING:
    from aiohttp.tracing import Trace

__all__ = [
    "MAX_URL_LENGTH",
    "ForbiddenAddressError",
    "GuardedConnector",
    "GuardedResolver",
    "IPAddress",
    "check_target_url",
    "find_forbidden_address_error",
    "forbidden_reason",
    "make_guarded_connector",
    "make_guarded_session",
    "parse_host_as_ip",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048

# The guard for literal-IP hosts overrides this (private) aiohttp hook; fail at
# import rather than silently lose the check if a future aiohttp renames it.
if not callable(getattr(aiohttp.TCPConnector, "_resolve_host", None)):  # pragma: no cover
    raise ImportError(
        "webhooks.outbound.netguard needs aiohttp.TCPConnector._resolve_host (aiohttp 3.10 - 3.x)"
    )


# --------------------------------------------------------------------------- #
# Address policy
# --------------------------------------------------------------------------- #

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# First match wins: more specific networks come first.
_IPV4_RULES: Final[tuple[tuple[ipaddress.IPv4Network, str], ...]] = (
    (_V4("169.254.169.254/32"), "cloud metadata"),  # AWS, GCP, Azure, OpenStack...
    (_V4("169.254.170.2/32"), "cloud metadata"),  # AWS ECS task metadata
    (_V4("100.100.100.200/32"), "cloud metadata"),  # Alibaba Cloud
    (_V4("0.0.0.0/32"), "unspecified"),
    (_V4("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved (IETF protocol assignments)"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved (6to4 relay anycast)"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

# Checked before the IPv4-compatible range ::/96, which contains both.
_IPV6_FIRST_RULES: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
)

# Checked after the ranges that embed an IPv4 address.
_IPV6_RULES: Final[tuple[tuple[ipaddress.IPv6Network, str], ...]] = (
    (_V6("64:ff9b:1::/48"), "NAT64 local-use prefix"),
    (_V6("100::/64"), "reserved (discard-only)"),
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("2001::/23"), "reserved (IETF protocol assignments)"),
    (_V6("5f00::/16"), "reserved (SRv6 SIDs)"),
    (_V6("fd00:ec2::254/128"), "cloud metadata"),  # AWS IMDS over IPv6
    (_V6("fc00::/7"), "private (unique local)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)

_IPV4_MAPPED: Final = _V6("::ffff:0:0/96")
_IPV4_COMPATIBLE: Final = _V6("::/96")
_NAT64_WELL_KNOWN: Final = _V6("64:ff9b::/96")
_TEREDO: Final = _V6("2001::/32")
_SIX_TO_FOUR: Final = _V6("2002::/16")
_GLOBAL_UNICAST: Final = _V6("2000::/3")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    """The IPv4 address in the low 32 bits of ``ip``."""
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def forbidden_reason(ip: IPAddress) -> str | None:
    """Say why ``ip`` may not receive deliveries, or return ``None`` if it may.

    ``None`` means a public unicast address. Otherwise the result is a short
    human reason such as ``"loopback"``, ``"private"``, ``"cloud metadata"``,
    ``"carrier-grade NAT"`` or ``"IPv4-mapped loopback address (127.0.0.1)"``;
    it is meant for error messages, not for parsing.

    IPv6 forms that carry an IPv4 address are judged by it, choosing the safer
    reading where there is a choice:

    * IPv4-mapped (``::ffff:a.b.c.d``) and IPv4-compatible (``::a.b.c.d``)
      addresses are refused outright (naming the embedded address's own
      reason when it has one); nothing legitimate needs them.
    * NAT64 well-known prefix (``64:ff9b::/96``) is judged by the embedded
      address, since DNS64 synthesises exactly these for public IPv4-only
      receivers on IPv6-only networks; the local-use prefix
      ``64:ff9b:1::/48`` is refused outright.
    * 6to4 (``2002::/16``) is judged by the embedded address.
    * Teredo (``2001::/32``) is refused outright; the reason names the
      embedded server or client address when that one is forbidden.

    Anything Python's :mod:`ipaddress` does not consider global, and any IPv6
    address outside the global unicast range ``2000::/3``, is ``"reserved"``.
    IPv6 zone ids do not change the verdict. Never raises for a valid address.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        for net4, reason in _IPV4_RULES:
            if ip in net4:
                return reason
        if not ip.is_global:  # pragma: no cover - the table covers every non-global range
            return "reserved"
        return None

    if ip.scope_id is not None:
        ip = ipaddress.IPv6Address(int(ip))
    for net, reason in _IPV6_FIRST_RULES:
        if ip in net:
            return reason
    if ip in _IPV4_MAPPED or ip in _IPV4_COMPATIBLE:
        kind = "IPv4-mapped" if ip in _IPV4_MAPPED else "IPv4-compatible"
        inner = _embedded_v4(ip)
        inner_reason = forbidden_reason(inner)
        if inner_reason is not None:
            return f"{kind} {inner_reason} address ({inner})"
        return f"{kind} address ({inner}); use the plain IPv4 form"
    if ip in _NAT64_WELL_KNOWN:
        inner = _embedded_v4(ip)
        inner_reason = forbidden_reason(inner)
        if inner_reason is not None:
            return f"NAT64 address embedding a {inner_reason} address ({inner})"
        return None
    if ip in _TEREDO:
        teredo = ip.teredo
        assert teredo is not None
        for inner in teredo:
            inner_reason = forbidden_reason(inner)
            if inner_reason is not None:
                return f"Teredo address embedding a {inner_reason} address ({inner})"
        return "Teredo tunnelling address (2001::/32)"
    if ip in _SIX_TO_FOUR:
        inner6 = ip.sixtofour
        assert inner6 is not None
        inner_reason = forbidden_reason(inner6)
        if inner_reason is not None:
            return f"6to4 address embedding a {inner_reason} address ({inner6})"
        return None
    for net, reason in _IPV6_RULES:
        if ip in net:
            return reason
    if ip not in _GLOBAL_UNICAST:
        return "reserved (outside global unicast 2000::/3)"
    if not ip.is_global:  # pragma: no cover - the table covers every non-global range
        return "reserved"
    return None


# --------------------------------------------------------------------------- #
# Literal addresses in every spelling
# --------------------------------------------------------------------------- #

_HEX_PART = re.compile(r"0[xX]([0-9a-fA-F]*)")
_OCT_PART = re.compile(r"0[0-7]*")
_DEC_PART = re.compile(r"[1-9][0-9]*")
# Label separators that IDNA (and so yarl, which aiohttp uses) treats as ".".
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """IPv4 parsing with the liberal rules of BSD/glibc ``inet_aton``.

    1 to 4 parts separated by dots; each part decimal, octal (leading ``0``)
    or hex (``0x``); the last part fills all remaining bytes (``127.1``,
    ``2130706433``). Slightly more liberal than glibc (a bare ``0x`` is 0), so
    it recognises a superset of what a resolver accepts.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if (m := _HEX_PART.fullmatch(part)) is not None:
            values.append(int(m.group(1) or "0", 16))
        elif _OCT_PART.fullmatch(part):
            values.append(int(part, 8))
        elif _DEC_PART.fullmatch(part):
            values.append(int(part, 10))
        else:
            return None
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    address, sep, zone = text.partition("%")
    if sep and zone.startswith("25") and len(zone) > 2:
        zone = zone[2:]  # RFC 6874: "%" is written "%25" inside a URL
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    if sep and zone:
        try:
            return ipaddress.IPv6Address(f"{address}%{zone}")
        except ValueError:
            return ip
    return ip


def parse_host_as_ip(host: str) -> IPAddress | None:
    """Return the address ``host`` denotes if a resolver would take it as a literal.

    Recognises dotted decimal, a single integer (``2130706433``), hex
    (``0x7f000001``, ``0x7f.0.0.1``), octal (``0177.0.0.1``,
    ``017700000001``), short forms (``127.1``, ``127.0.1``), trailing dots,
    full-width digits and ideographic dots (which IDNA folds to ASCII),
    trailing junk after whitespace (as ``inet_aton`` ignores it), and IPv6
    bare or in brackets, with zone id (``fe80::1%eth0`` or ``%25eth0``) or
    embedded IPv4 (``::ffff:127.0.0.1``).

    Returns ``None`` for anything else, i.e. for real hostnames. Never raises.
    """
    text = host
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_DOTS)
        if not text.isascii():
            return None
    if text.startswith("[") and text.endswith("]"):
        return _parse_ipv6(text[1:-1])
    if ":" in text:
        return _parse_ipv6(text)
    text = text.split(None, 1)[0] if text.strip() else ""
    text = text.rstrip(".")
    if not text:
        return None
    return _inet_aton(text)


# --------------------------------------------------------------------------- #
# Registration-time check
# --------------------------------------------------------------------------- #

_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOCAL_SUFFIXES: Final = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


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
            raise _refuse(f"host {host!r} is not a public address ({reason})")
        bare = host[1:-1] if host.startswith("[") else host
        if isinstance(ip, ipaddress.IPv4Address) and bare != str(ip):
            raise _refuse(f"host {host!r} is an unusual spelling of the IPv4 address {ip}; write it as {ip}")
        return
    if "%" in host:
        raise _refuse(f"host {host!r} contains percent-encoding")
    name = unicodedata.normalize("NFKC", host).translate(_DOTS).casefold().rstrip(".")
    if not name:
        raise _refuse("it has no host")
    if not allow_private:
        if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
            raise _refuse(f"host {host!r} is a local name")
        if "." not in name:
            raise _refuse(f"host {host!r} is not a fully qualified domain name")
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
        raise ForbiddenAddressError(f"refused: {host} is not a public address ({reason})")
    shown = "; ".join(f"{addr}: {reason}" for addr, reason in list(refused.items())[:4])
    more = f"; and {len(refused) - 4} more" if len(refused) > 4 else ""
    raise ForbiddenAddressError(f"refused: {host} resolves only to forbidden addresses ({shown}{more})")


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
        raise ForbiddenAddressError(f"refused: connection to {host} is not allowed ({reason})")
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
        ttl_dns_cache: int | None = 10,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        super().__init__(
            limit=limit,
            limit_per_host=limit_per_host,
            ttl_dns_cache=ttl_dns_cache,
            resolver=GuardedResolver(allow_private=allow_private, inner=resolver),
            socket_factory=None if allow_private else _guarded_socket_factory,
        )
        # aiohttp never closes a resolver it was handed; this wrapper is ours
        # (its close() also closes ``resolver``, so only when we made that one).
        self._resolver_owner = resolver is None

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


def make_guarded_session(*, allow_private: bool, limit: int, timeout_s: float) -> aiohttp.ClientSession:
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

    Must be called while an event loop runs; the caller closes the session
    (``AiohttpTransport.aclose`` does).
    """
    connector = make_guarded_connector(allow_private, limit=limit)
    return aiohttp.ClientSession(
        connector=connector,
        connector_owner=True,
        timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
