"""bench/tls_receiver.py: the test CA's certificate covers the 40 receiver hosts, and the receiver
answers over TLS on each of them for a client that trusts only that CA (no peers, no Redis)."""

import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from bench.tls_receiver import CONTROL_HOST, CertFiles, host_addresses, make_certs

ROOT = Path(__file__).resolve().parent.parent.parent
HOSTS = host_addresses(40)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"), HOSTS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def receiver(certs: CertFiles) -> Iterator[int]:
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.tls_receiver",
        "--port",
        str(port),
        "--cert-dir",
        str(certs.cert.parent),
    ]
    proc = subprocess.Popen(
        [*argv, "--hosts", "40"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                socket.create_connection((HOSTS[-1], port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def test_the_certificate_names_every_receiver_host(certs: CertFiles) -> None:
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    assert ips == {CONTROL_HOST, *HOSTS}
    assert HOSTS[0] == "127.0.0.2" and HOSTS[-1] == "127.0.0.41"
    ca = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert all(ipaddress.ip_address(h).is_loopback for h in HOSTS)


def test_the_receiver_answers_over_tls_with_the_ca(certs: CertFiles, receiver: int) -> None:
    verify = ssl.create_default_context(cafile=str(certs.ca))
    with httpx.Client(verify=verify, timeout=5.0) as client:
        for host in (HOSTS[0], HOSTS[17], HOSTS[-1]):
            resp = client.post(
                f"https://{host}:{receiver}/fast/e1", content=b"{}", headers={"webhook-id": host}
            )
            assert resp.status_code == 200
        assert client.post(f"https://{HOSTS[3]}:{receiver}/fail/e2", content=b"{}").status_code == 500
        stats = client.get(f"https://{CONTROL_HOST}:{receiver}/stats").json()
    assert stats["classes"]["fast"]["unique"] == 3
    assert set(stats["accepted"]) == {HOSTS[0], HOSTS[17], HOSTS[-1], HOSTS[3]}  # one connection per host
    assert all(n == 1 for n in stats["accepted"].values())
    untrusted = ssl.create_default_context()  # the system's CAs only: the test CA is not among them
    with httpx.Client(verify=untrusted, timeout=5.0) as client, pytest.raises(httpx.ConnectError):
        client.get(f"https://{HOSTS[0]}:{receiver}/healthz")
