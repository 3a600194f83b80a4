"""The egress proxy's pure parts: what the proxy URL means, and which targets may be handed to it."""

import base64

import pytest

from webhooks.errors import ConfigError
from webhooks.outbound.egress import judge, parse_proxy_url
from webhooks.settings import load


def test_credentials_leave_the_url_and_become_proxy_authorization() -> None:
    assert parse_proxy_url("http://smokescreen.internal:4750") == ("http://smokescreen.internal:4750", None)
    url, auth = parse_proxy_url("https://egress:p%40ss@proxy.internal:3128/")
    assert url == "https://proxy.internal:3128"
    assert auth == "Basic " + base64.b64encode(b"egress:p@ss").decode()
    assert parse_proxy_url("http://[fd00::1]:3128")[0] == "http://[fd00::1]:3128"


BAD_PROXY_URLS = [
    "socks5://user:hunter2@p:1080",
    "http://user:hunter2@",
    "http://user:hunter2@p:3128/path",
    "http://user:hunter2@p:70000",
    "user:hunter2@p:3128",
]


@pytest.mark.parametrize("bad", BAD_PROXY_URLS)
def test_a_bad_proxy_url_stops_the_process_naming_the_variable_not_the_value(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^WEBHOOKS_PROXY_URL: ") as err:
        load(proxy_url=bad)
    assert "hunter2" not in str(err.value)


def test_a_target_is_refused_when_any_of_its_addresses_is_forbidden() -> None:
    assert judge("hooks.example.com", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]) is None
    mixed = judge("rebind.example.com", ["93.184.215.14", "169.254.169.254"])
    assert mixed is not None and mixed.startswith("refused: rebind.example.com")
    assert "169.254.169.254: cloud metadata" in mixed
    only_local = judge("localhost", ["127.0.0.1", "::1"])
    assert only_local is not None and "127.0.0.1: loopback" in only_local and "::1: loopback" in only_local
    assert judge("x", ["fe80::1%eth0"]) is not None
