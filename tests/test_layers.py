"""Dependencies point down: the domain (webhooks/) imports nothing above it; only cli/ imports cli.

The Python client (clients/python, import package ``hookyard_client``) is its own distribution:
it imports nothing of the server, and of the server only cli/ imports it.
"""

import ast
import sys
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
    [
        ("webhooks", {"api", "workers", "cli", "hookyard_client"}),
        ("workers", {"api", "cli", "hookyard_client"}),
        ("api", {"workers", "cli", "hookyard_client"}),
    ],
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
    "webhooks.queueing",
    "cli.snapshot",
)


def test_the_api_facing_cli_commands_use_the_client_not_the_store() -> None:
    found = imported_modules(ROOT / "cli" / "api_commands.py")
    assert "hookyard_client" in found, "cli/api_commands.py calls the API through hookyard_client"
    wrong = sorted(m for m in found if any(m == s or m.startswith(s) for s in STORAGE))
    assert not wrong, f"cli/api_commands.py must not reach Redis itself: {wrong}"


CLIENT = ROOT / "clients" / "python" / "src" / "hookyard_client"
CLIENT_MAY_IMPORT = {"hookyard_client", "httpx", "pydantic"}  # and the standard library


def test_the_client_imports_only_httpx_pydantic_and_the_standard_library() -> None:
    files = sorted(CLIENT.rglob("*.py"))
    assert files, "no module under clients/python/src/hookyard_client"
    wrong = {
        str(f.relative_to(ROOT)): found
        for f in files
        if (found := sorted(imported_packages(f) - CLIENT_MAY_IMPORT - sys.stdlib_module_names))
    }
    assert not wrong, f"the client distribution depends on httpx and pydantic only: {wrong}"


def test_the_module_walk_sees_from_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("from webhooks import store\nimport redis.asyncio\n")
    assert imported_modules(sample) == {"webhooks", "webhooks.store", "redis.asyncio"}


# Inside the domain: each subpackage of webhooks/ and what it must not import (checked per file).
# The top-level leaves (errors, ids, keys, models, timefmt) import no subpackage at all.
SUBPACKAGES = ("queueing", "intake", "stores", "outbound", "runtime")
DOMAIN_RULES = {
    "runtime": {"queueing", "intake", "stores", "outbound"},  # process plumbing only
    "outbound": {"queueing", "intake", "stores", "runtime"},  # signing, retry, SSRF guard
    "queueing": {"intake", "stores", "outbound"},  # the queue engine knows no store
    "intake": {"stores"},  # ingest writes through the queue, never through a store
    "stores": set(),
    "leaves": set(SUBPACKAGES),
}
LEAVES = ("errors", "ids", "keys", "models", "timefmt")


def domain_part(module: str) -> str | None:
    """The subpackage of webhooks/ a module belongs to ('top' for a top-level module), or None."""
    parts = module.split(".")
    if parts[0] != "webhooks" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in SUBPACKAGES else "top"


@pytest.mark.parametrize("part", sorted(DOMAIN_RULES))
def test_a_domain_subpackage_imports_only_what_sits_beside_or_below_it(part: str) -> None:
    if part == "leaves":
        files = [ROOT / "webhooks" / f"{name}.py" for name in LEAVES]
    else:
        files = sorted((ROOT / "webhooks" / part).rglob("*.py"))
    assert files and all(f.exists() for f in files), f"webhooks/{part} is not where the rule expects it"
    forbidden = DOMAIN_RULES[part]
    wrong = {
        str(f.relative_to(ROOT)): found
        for f in files
        if (found := sorted({domain_part(m) for m in imported_modules(f)} & forbidden))
    }
    assert not wrong, f"webhooks/{part} must not import webhooks.{{{','.join(sorted(forbidden))}}}: {wrong}"


def test_the_domain_part_of_a_module() -> None:
    assert domain_part("webhooks.queueing.queue") == "queueing"
    assert domain_part("webhooks.keys") == "top"
    assert domain_part("webhooks") is None and domain_part("redis.asyncio") is None


def test_at_most_15_modules_sit_at_the_top_of_the_domain() -> None:
    top = sorted(p.name for p in (ROOT / "webhooks").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 15, f"{len(top)} modules at the top of webhooks/ (move some into a subpackage): {top}"


def test_no_subpackage_of_the_domain_shadows_a_module_of_its_name() -> None:
    for folder in (p for p in (ROOT / "webhooks").rglob("*") if p.is_dir() and (p / "__init__.py").exists()):
        assert not folder.with_suffix(".py").exists(), f"{folder.name}/ and {folder.name}.py: one import path"


MAX_MODULE_LINES = 500


def test_no_module_of_the_packages_is_over_500_lines() -> None:
    files = [
        f for package in ("webhooks", "workers", "api", "cli") for f in sorted((ROOT / package).rglob("*.py"))
    ]
    assert len(files) > 20, "the walk finds the packages' modules"
    long = {
        str(f.relative_to(ROOT)): n
        for f in files
        if (n := len(f.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them along a seam): {long}"
