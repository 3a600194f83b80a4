"""What deploy/Dockerfile's first stage builds, rebuilt without a container engine.

:func:`build_context` copies exactly what the Dockerfile's ``COPY`` lines take, each checked
against the ``.dockerignore`` allowlist (``__pycache__``, ``*.pyc``, ``*.egg-info`` and the
client's ``build`` folder left out, as there). :func:`image_venv` then does the stage's
``python -m venv`` and its ``pip install`` of what the Dockerfile's ``RUN`` line names (the
client's folder and ``.``). Offline: the build uses the test virtualenv's setuptools
(``--no-build-isolation``) and the dependencies are not downloaded but seen through one ``.pth``
line naming the test virtualenv's site-packages. A plain path line does not process the ``.pth``
files of that folder, so the test virtualenv's editable installs (``.pth`` files there) stay
inert: the platform's own packages and the client come from the build context only (the image
test checks where each was imported from).
"""

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
BIN = Path(sys.executable).parent


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) of every line of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_allowed() -> set[str]:
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    return {ln[1:] for ln in lines if ln.startswith("!")}


def build_context(dest: Path) -> Path:
    """The first stage's ``/src`` after its COPY lines: ``dest``, filled from the repository."""
    allowed = dockerignore_allowed()
    dest.mkdir(parents=True)
    for word, rest in dockerfile_instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, target = rest.split()
        for source in sources:
            assert source in allowed, f"COPY {source}: .dockerignore keeps it out of the build context"
            src = ROOT / source
            if src.is_dir():
                to = dest / target
                left_out = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
                shutil.copytree(src, to, ignore=left_out)
            else:
                shutil.copy2(src, dest / target / source if target.endswith("/") else dest / target)
    return dest


def pip_install_args() -> list[str]:
    """What the Dockerfile's ``RUN .../pip install ...`` installs (``./clients/python .``)."""
    (args,) = [
        rest.split(" install ", 1)[1].split()
        for word, rest in dockerfile_instructions()
        if word == "RUN" and "/pip install " in rest
    ]
    return args


def image_venv(context: Path, venv: Path) -> Path:
    """``python -m venv`` and ``pip install`` of ``context``, as the first stage does; returns bin/."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    # The stage's pip builds in isolation with setuptools>=68 from the index; this venv's bundled
    # setuptools (ensurepip's, too old to build a wheel) would shadow the test venv's one.
    run_pip(venv, "uninstall", "-q", "-y", "setuptools")
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    run_pip(venv, "install", "-q", "--no-deps", "--no-build-isolation", *pip_install_args(), cwd=context)
    return venv / "bin"


def run_pip(venv: Path, *args: str, cwd: Path | None = None) -> None:
    done = subprocess.run(
        [str(venv / "bin" / "pip"), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
