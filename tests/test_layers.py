"""Dependencies point down: the domain (webhooks/) imports nothing above it; only cli/ imports cli."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every absolute import in the file (``from . import`` stays inside)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("webhooks", {"api", "workers", "cli"}), ("workers", {"api", "cli"}), ("api", {"workers", "cli"})],
)
def test_a_layer_imports_nothing_above_it(package: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no module under {package}/"
    wrong = {
        str(f.relative_to(ROOT)): sorted(imported_packages(f) & forbidden)
        for f in files
        if imported_packages(f) & forbidden
    }
    assert not wrong, f"{package}/ must not import {sorted(forbidden)}: {wrong}"


def test_the_walk_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import api.app\nfrom workers import engine\ndef f():\n    from cli.main import main\n")
    assert imported_packages(sample) == {"api", "workers", "cli"}


def imported_modules(path: Path) -> set[str]:
    """Every module an absolute import in the file names (``from a import b`` counts ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


# What only a process that owns the data may use: the API's operator commands go through the API.
STORAGE = (
    "redis",
    "webhooks.stores",
    "webhooks.runtime.connection",
    "webhooks.queueing.queue",
    "cli.snapshot",
)


def test_the_api_facing_cli_commands_use_the_client_not_the_store() -> None:
    found = imported_modules(ROOT / "cli" / "api_commands.py")
    assert "webhooks.client" in found, "cli/api_commands.py calls the API through webhooks.client"
    wrong = sorted(m for m in found if any(m == s or m.startswith(s) for s in STORAGE))
    assert not wrong, f"cli/api_commands.py must not reach Redis itself: {wrong}"


def test_the_module_walk_sees_from_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("from webhooks import store\nimport redis.asyncio\n")
    assert imported_modules(sample) == {"webhooks", "webhooks.store", "redis.asyncio"}
