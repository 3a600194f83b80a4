"""Several "hosts" on one machine for multi-host tests: Linux network namespaces on a private switch.

Layout of one :class:`NetnsLab` (``<lab>`` is a random id, so labs never collide)::

    <lab>-h0 [eth0 198.18.K.1] ─veth─ p0 ┐
    <lab>-h1 [eth0 198.18.K.2] ─veth─ p1 ├─ br0 in namespace <lab>-sw
    ...                                  │
    root namespace [<lab>r 198.18.K.254] ┘ (only with root_leg=True)

Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for benchmarking test
networks; K is picked per lab. They exist only on these veth links and the bridge, which lives
in its own namespace: no host namespace has a default route, and the root namespace learns one
/24 route, and only when ``root_leg=True`` (so the test process itself can talk to the hosts).
No packet to these addresses can leave the machine. Each host also has its own loopback.

A host runs commands with :meth:`NetnsLab.run` / :meth:`NetnsLab.popen` (``ip netns exec``).
:meth:`NetnsLab.cut` takes a host's switch port down (``ip link set pN down``: like pulling
its cable: its processes keep running, nothing reaches them) and :meth:`NetnsLab.restore` brings
it back. :meth:`NetnsLab.stop` kills every process started in the lab's namespaces and deletes the
namespaces and links, leaving nothing behind.

Needs root (CAP_NET_ADMIN) and iproute2; the ``make_netns_lab`` fixture skips with the reason
when namespaces cannot be made here. A platform process in a lab host that delivers to another
lab host needs ``WEBHOOKS_ALLOW_PRIVATE_TARGETS=true`` (198.18.0.0/15 is a reserved range).
"""

import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

NET_PREFIX = "198.18"
ROOT_HOST_OCTET = 254


class NetnsError(RuntimeError):
    pass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or ``None`` when they can (probes for real)."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    probe = f"whprobe-{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    try:
        inside = subprocess.run(
            ["ip", "netns", "exec", probe, "ip", "link", "set", "lo", "up"], capture_output=True, text=True
        )
        if inside.returncode != 0:
            return f"`ip netns exec` is not permitted here: {inside.stderr.strip()}"
        veth = ip(
            "link",
            "add",
            "a0",
            "netns",
            probe,
            "type",
            "veth",
            "peer",
            "name",
            "b0",
            "netns",
            probe,
            check=False,
        )
        if veth.returncode != 0:
            return f"veth pairs are not permitted here: {veth.stderr.strip()}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    index: int
    netns: str
    address: str  # on eth0, reachable from every other host of the lab
    switch_port: str  # the veth end on the bridge, in the switch namespace


class NetnsLab:
    def __init__(self, hosts: int, root_leg: bool = False) -> None:
        assert 1 <= hosts <= 200
        self.id = f"whl{secrets.token_hex(3)}"
        self.switch = f"{self.id}-sw"
        self.root_leg = root_leg
        self.root_if = f"{self.id}r"  # 10 characters, under the 15 Linux allows
        self.subnet_octet = self._pick_subnet()
        self.root_address = f"{NET_PREFIX}.{self.subnet_octet}.{ROOT_HOST_OCTET}" if root_leg else None
        self.hosts = [
            Host(i, f"{self.id}-h{i}", f"{NET_PREFIX}.{self.subnet_octet}.{i + 1}", f"p{i}")
            for i in range(hosts)
        ]
        self.procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []

    def _pick_subnet(self) -> int:
        """A /24 of 198.18.0.0/16 that the root namespace has no route for yet."""
        for _ in range(100):
            octet = secrets.randbelow(256)
            if not ip("-4", "-o", "route", "show", f"{NET_PREFIX}.{octet}.0/24").stdout.strip():
                return octet
        raise NetnsError("no unused 198.18.x.0/24 left")

    @property
    def cidr(self) -> str:
        return f"{NET_PREFIX}.{self.subnet_octet}.0/24"

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> "NetnsLab":
        try:
            self._add_netns(self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for host in self.hosts:
                self._add_netns(host.netns)
                ip(
                    "link", "add", "eth0", "netns", host.netns,
                    "type", "veth", "peer", "name", host.switch_port, "netns", self.switch,
                )  # fmt: skip
                self._plug(host.switch_port)
                ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
                ip("-n", host.netns, "link", "set", "eth0", "up")
                ip("-n", self.switch, "link", "set", host.switch_port, "up")
            if self.root_leg:
                ip("link", "add", self.root_if, "type", "veth", "peer", "name", "proot", "netns", self.switch)
                self._plug("proot")
                ip("addr", "add", f"{self.root_address}/24", "dev", self.root_if)
                ip("link", "set", self.root_if, "up")
                ip("-n", self.switch, "link", "set", "proot", "up")
        except BaseException:
            self.stop()
            raise
        return self

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _plug(self, port: str) -> None:
        ip("-n", self.switch, "link", "set", port, "master", "br0")

    def stop(self) -> None:
        """Kill every process in the lab's namespaces, then delete them (and the root leg)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for name in self._made:
            # Anything still inside (a grandchild that left our process group) was started here.
            for pid in ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.root_leg:
            ip("link", "del", self.root_if, check=False)
        for name in reversed(self._made):
            ip("netns", "del", name, check=False)
        self._made.clear()

    # -- using hosts -------------------------------------------------------------------------------

    def _argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", host.netns, *argv]

    def run(
        self, host: Host, argv: Sequence[str], timeout_s: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host`` to completion; returns its exit status and output (text)."""
        return subprocess.run(self._argv(host, argv), capture_output=True, text=True, timeout=timeout_s)

    def popen(self, host: Host, argv: Sequence[str], **kwargs: Any) -> "subprocess.Popen[Any]":
        """Start ``argv`` in ``host`` in its own process group; :meth:`stop` kills it."""
        proc = subprocess.Popen(self._argv(host, argv), start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def cut(self, host: Host) -> None:
        """Take ``host``'s switch port down: nothing reaches it, nothing from it gets out."""
        ip("-n", self.switch, "link", "set", host.switch_port, "down")

    def restore(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.switch_port, "up")

    def namespaces(self) -> list[str]:
        return list(self._made)


@pytest.fixture
def make_netns_lab() -> Iterator[Callable[..., NetnsLab]]:
    """``make_netns_lab(hosts, root_leg=False)`` → a started lab; skips where namespaces are refused."""
    labs: list[NetnsLab] = []

    def make(hosts: int, root_leg: bool = False) -> NetnsLab:
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(f"multi-host tests need Linux network namespaces: {reason}")
        lab = NetnsLab(hosts, root_leg)
        labs.append(lab)
        return lab.start()

    yield make
    for lab in labs:
        lab.stop()
