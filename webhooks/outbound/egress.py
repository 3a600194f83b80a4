"""Deliveries through an HTTP(S) forward proxy (``WEBHOOKS_PROXY_URL``), so they leave from fixed addresses.

Without a proxy, :func:`delivery_transport` is the direct transport: aiohttp over the guarded
connector of :mod:`webhooks.outbound.netguard`, which connects only to the addresses it checked.

With a proxy, every request goes to the proxy: ``CONNECT host:port`` for ``https`` targets (TLS
runs end to end through the tunnel, the proxy sees no content), the absolute-form request for
``http`` targets. The proxy resolves the target's name itself, so the connect-time guard cannot
pin the address any more. :class:`ProxiedTransport` therefore checks the target before handing
it over: it resolves the name and refuses it (:class:`ForbiddenAddressError`, before the proxy
sees anything) when **any** address is not public, by the same policy
(:func:`~webhooks.outbound.addresses.forbidden_reason`); a name that does not resolve here is not sent
either. What is left to the proxy is the window between our resolution and its own (DNS
rebinding): it must refuse private, loopback, link-local and metadata addresses itself on the
address it connects to (smokescreen does by default; see docs/standard-webhooks.md).

The proxy's own address is the operator's and is not checked. Credentials in the proxy URL
(``http://user:password@proxy:3128``) are sent as ``Proxy-Authorization`` to the proxy only:
on the ``CONNECT`` of an https target, on the request itself for an http target.
"""

import asyncio
import base64
import ipaddress
import socket
import time
from urllib.parse import unquote, urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from webhooks.outbound.addresses import forbidden_reason, parse_host_as_ip
from webhooks.outbound.netguard import (
    KEEPALIVE_S,
    ForbiddenAddressError,
    make_guarded_session,
)

VERDICT_TTL_S = 10.0  # as long as the direct connector caches DNS answers
MAX_VERDICTS = 10_000


def parse_proxy_url(url: str) -> tuple[str, str | None]:
    """The proxy URL without credentials, and the ``Proxy-Authorization`` value they make (or None).

    Raises :class:`ValueError` (never echoing the URL, which may hold a password) unless it is
    ``http(s)://[user:password@]host[:port][/]``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a URL (http://host:port or https://host:port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host, like http://proxy.internal:4750")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL has no path, query or fragment")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    bare = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    if parts.username is None:
        return bare, None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return bare, "Basic " + base64.b64encode(pair.encode()).decode()


def judge(host: str, addresses: list[str]) -> str | None:
    """Why ``host`` may not be handed to the proxy, given what it resolves to; None when it may."""
    refused = []
    for address in addresses:
        try:
            reason = forbidden_reason(ipaddress.ip_address(address.partition("%")[0]))
        except ValueError:
            reason = "not a numeric address"
        if reason is not None:
            refused.append(f"{address}: {reason}")
    if not refused:
        return None
    shown = "; ".join(refused[:4])
    return f"refused: {host} resolves to a forbidden address ({shown}); the proxy could connect to it"


class ProxiedTransport(AiohttpTransport):
    """The httpx transport of a worker whose deliveries all go through ``proxy_url``."""

    def __init__(
        self, proxy_url: str, *, allow_private: bool, limit: int, timeout_s: float, limit_per_host: int = 0
    ) -> None:
        url, self._auth = parse_proxy_url(proxy_url)
        session = aiohttp.ClientSession(
            # it only ever connects to the proxy; a tunnel's pool key is its target host
            connector=aiohttp.TCPConnector(
                limit=limit, limit_per_host=limit_per_host, keepalive_timeout=KEEPALIVE_S
            ),
            timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        headers = {"Proxy-Authorization": self._auth} if self._auth else None
        super().__init__(client=session, proxy=httpx.Proxy(url, headers=headers))
        self._allow_private = allow_private
        self._verdicts: dict[str, tuple[float, str | None]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._allow_private:
            await self.check_target(request.url.host, request.url.port or 0)
        if self._auth and request.url.scheme == "http":
            request.headers["Proxy-Authorization"] = self._auth  # absolute-form: the proxy reads it here
        return await super().handle_async_request(request)

    async def check_target(self, host: str, port: int) -> None:
        """Raise :class:`ForbiddenAddressError` when ``host`` is or resolves to a forbidden address."""
        now = time.monotonic()
        cached = self._verdicts.get(host)
        if cached is not None and cached[0] > now:
            verdict = cached[1]
        else:
            verdict = judge(host, await _resolve(host, port))
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[host] = (now + VERDICT_TTL_S, verdict)
        if verdict is not None:
            raise ForbiddenAddressError(verdict)


async def _resolve(host: str, port: int) -> list[str]:
    literal = parse_host_as_ip(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {host} ({exc.strerror or type(exc).__name__})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def delivery_transport(
    proxy_url: str | None, *, allow_private: bool, limit: int, timeout_s: float, limit_per_host: int = 0
) -> httpx.AsyncBaseTransport:
    """The worker's transport: through the proxy when one is set, else straight to the checked address.

    ``limit_per_host`` caps its connections to one target host (0: none).
    Must be called while an event loop runs; ``aclose()`` closes its session.
    """
    if proxy_url:
        return ProxiedTransport(
            proxy_url,
            allow_private=allow_private,
            limit=limit,
            timeout_s=timeout_s,
            limit_per_host=limit_per_host,
        )
    session = make_guarded_session(
        allow_private=allow_private, limit=limit, timeout_s=timeout_s, limit_per_host=limit_per_host
    )
    # httpx's transport interface over aiohttp (the fast one measured here); requests go
    # to it directly: no redirects are followed, no cookie is kept between receivers.
    return AiohttpTransport(client=session)
