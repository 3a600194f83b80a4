"""Which addresses may receive deliveries, and what a host spelled as an address means.

:func:`forbidden_reason` is the one policy both of :mod:`webhooks.outbound.netguard`'s gates share:
it says why an address is not a public unicast destination (private, loopback, cloud metadata,
an IPv4 address embedded in IPv6...), or returns ``None``. :func:`parse_host_as_ip` reads a host
the way resolvers do (``0x7f.1``, ``2130706433``, fullwidth dots...), so that no spelling of a
forbidden address passes the registration-time check. Pure functions, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Final, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

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
DOT_VARIANTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


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
        text = unicodedata.normalize("NFKC", text).translate(DOT_VARIANTS)
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
