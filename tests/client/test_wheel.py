"""The client as its own distribution: its wheel, installed into a clean virtualenv beside only
what its metadata requires, runs its README's first example as written against the real API,
and the server cannot be imported there.

Offline: the wheel is built with the test virtualenv's setuptools (``--no-build-isolation``, from
a copy of clients/python, so the checkout gets no ``build/``), and the clean virtualenv sees its
dependencies through one ``.pth`` line naming a folder of links to exactly the distributions the
wheel's ``Requires-Dist`` needs, transitively (read from the test virtualenv's metadata). So a
missing requirement, or an import of the server, fails here.
"""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hookyard_client import Client
from tests.support.api_server import ApiServer
from tests.support.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "clients" / "python"
BIN = Path(sys.executable).parent


def run(
    *argv: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def readme_example() -> str:
    match = re.search(r"```python\n(.*?)```", (CLIENT_DIR / "README.md").read_text(), re.S)
    assert match, "the client's README has a Python example"
    return match.group(1)


def closure(requires: list[str]) -> set[str]:
    """The distributions (canonical names) that ``requires`` needs, with theirs, no extras."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requires]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if (name := canonicalize_name(req.name)) not in seen:
            seen.add(name)
            todo += [Requirement(r) for r in metadata.requires(req.name) or []]
    return seen


def link_distributions(names: set[str], folder: Path) -> None:
    """Links in ``folder`` to every top-level file and folder of those installed distributions."""
    folder.mkdir()
    for name in sorted(names):
        dist = metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or []}:
            source = Path(str(dist.locate_file(top)))
            if top != ".." and not top.endswith(".pth") and source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)


@dataclass
class CleanVenv:
    wheel: Path
    python: Path
    requires: list[str]
    cwd: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanVenv]:
    tmp = tmp_path_factory.mktemp("client-wheel")
    source = tmp / "source"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    built = run(
        BIN / "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source, cwd=tmp
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp / "dist").glob("hookyard_client-*.whl")
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/METADATA"))
    )
    requires = [
        ln.removeprefix("Requires-Dist: ")
        for ln in meta.decode().splitlines()
        if ln.startswith("Requires-Dist:")
    ]

    venv = tmp / "venv"
    made = run(sys.executable, "-m", "venv", venv, cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp
    ).stdout.strip()
    link_distributions(closure(requires), tmp / "deps")
    (Path(site) / "zz_client_dependencies.pth").write_text(f"{tmp / 'deps'}\n")
    installed = run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    yield CleanVenv(wheel, python, requires, tmp, env)


def test_the_wheel_holds_the_typed_client_and_requires_httpx_and_pydantic_only(clean_venv: CleanVenv) -> None:
    names = zipfile.ZipFile(clean_venv.wheel).namelist()
    modules = {p.name for p in (CLIENT_DIR / "src" / "hookyard_client").glob("*.py")}
    assert {n.removeprefix("hookyard_client/") for n in names if n.startswith("hookyard_client/")} == {
        *modules,
        "py.typed",
    }
    assert all(n.startswith(("hookyard_client/", "hookyard_client-")) for n in names), names
    assert sorted(canonicalize_name(Requirement(r).name) for r in clean_venv.requires) == [
        "httpx",
        "pydantic",
    ]


def test_the_clean_venv_has_the_client_and_its_dependencies_but_not_the_server(clean_venv: CleanVenv) -> None:
    probe = "import hookyard_client as c, httpx, pydantic; print(c.__file__, c.__version__)"
    found = run(clean_venv.python, "-W", "error", "-c", probe, cwd=clean_venv.cwd, env=clean_venv.env)
    assert found.returncode == 0, found.stderr
    path, version = found.stdout.split()
    assert path.startswith(str(clean_venv.cwd / "venv")) and version == metadata.version("hookyard-client")
    checked = run(clean_venv.python, "-m", "pip", "check", cwd=clean_venv.cwd, env=clean_venv.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for server in ("webhooks", "api", "workers", "cli", "redis", "fastapi"):
        refused = run(clean_venv.python, "-c", f"import {server}", cwd=clean_venv.cwd, env=clean_venv.env)
        assert refused.returncode == 1 and f"No module named '{server}'" in refused.stderr, refused.stderr


def test_the_readme_example_runs_as_written_from_the_environment(
    clean_venv: CleanVenv, api_server: ApiServer, tenant_key: str, receiver: Receiver
) -> None:
    with Client(api_server.url, tenant_key) as api:
        endpoint = api.endpoints.create(receiver.url("ok/hooks"), event_types=["invoice.paid"])
    script = clean_venv.cwd / "example.py"
    script.write_text(readme_example())
    env = {**clean_venv.env, "WEBHOOKS_API_URL": api_server.url, "WEBHOOKS_API_KEY": tenant_key}
    done = run(clean_venv.python, "-W", "error", script, cwd=clean_venv.cwd, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"evt_[0-9a-z]{26} invoice\.paid", lines[0])
    assert lines[1] == f"{endpoint.id} pending"
