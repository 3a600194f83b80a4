"""The network-namespace harness: hosts reach each other through the switch, a cut host does not."""

import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.support.netns import Host, NetnsLab, ip
from tests.support.poll import poll

PORT = 8080  # each host has its own network stack, so a fixed port collides with nothing


def serve(lab: NetnsLab, host: Host, root: Path) -> subprocess.Popen[bytes]:
    (root / "hello.txt").write_text(f"hello from host {host.index}\n")
    return lab.popen(
        host,
        [sys.executable, "-m", "http.server", "--bind", host.address, "--directory", str(root), str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def fetch(lab: NetnsLab, client: Host, server: Host, timeout_s: float = 2.0) -> str | None:
    """``hello.txt`` of ``server`` fetched from inside ``client``, or None when it cannot be reached."""
    code = (
        "import sys, urllib.request\n"
        f"try: print(urllib.request.urlopen('http://{server.address}:{PORT}/hello.txt', timeout={timeout_s})"
        ".read().decode(), end='')\n"
        "except OSError as e: sys.exit(f'unreachable: {e}')\n"
    )
    result = lab.run(client, [sys.executable, "-c", code], timeout_s=timeout_s + 20)
    return result.stdout if result.returncode == 0 else None


def test_two_hosts_talk_http_through_the_switch_and_a_cut_host_is_unreachable(
    make_netns_lab: Callable[..., NetnsLab], tmp_path: Path
) -> None:
    lab = make_netns_lab(2)
    a, b = lab.hosts
    assert a.address != b.address and a.address.startswith("198.18.")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    serve(lab, a, tmp_path / "a")
    serve(lab, b, tmp_path / "b")

    assert poll(lambda: fetch(lab, b, a), what="host 1 reaching host 0") == "hello from host 0\n"
    assert poll(lambda: fetch(lab, a, b), what="host 0 reaching host 1") == "hello from host 1\n"
    # Each host has its own loopback: host 1's 127.0.0.1 is not host 0's.
    loop = lab.run(
        b, [sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1)"]
    )
    assert loop.returncode != 0

    lab.cut(a)
    assert fetch(lab, b, a, timeout_s=1.0) is None, "a cut host must not answer"
    lab.restore(a)
    assert poll(lambda: fetch(lab, b, a), what="host 0 back after restore") == "hello from host 0\n"


def test_root_leg_lets_the_test_process_reach_a_host(
    make_netns_lab: Callable[..., NetnsLab], tmp_path: Path
) -> None:
    lab = make_netns_lab(1, root_leg=True)
    (host,) = lab.hosts
    serve(lab, host, tmp_path)

    def get() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{host.address}:{PORT}/hello.txt", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return None

    assert poll(get, what="the root namespace reaching the host") == "hello from host 0\n"


def test_stop_leaves_no_namespace_process_or_route_behind(
    make_netns_lab: Callable[..., NetnsLab], tmp_path: Path
) -> None:
    lab = make_netns_lab(2, root_leg=True)
    server = serve(lab, lab.hosts[0], tmp_path)
    names = lab.namespaces()
    assert len(names) == 3 and all(n in ip("netns", "list").stdout for n in names)

    lab.stop()

    assert server.poll() is not None
    listed = ip("netns", "list").stdout
    assert not [n for n in names if n in listed]
    assert ip("link", "show", lab.root_if, check=False).returncode != 0
    assert not ip("-4", "-o", "route", "show", lab.cidr).stdout.strip()
