"""``webhooks demo`` as a new user runs it: its summary tells the promise, and it cleans up."""

import re
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support.up import ROOT, clean_env


def _ours(tmp: Path) -> list[int]:
    """Processes still working in (or configured for) a folder under ``tmp``."""
    found = []
    for proc in psutil.process_iter(["cwd", "environ"]):
        try:
            cwd, env = proc.info["cwd"] or "", proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if cwd.startswith(str(tmp)) or env.get("WEBHOOKS_DATA_DIR", "").startswith(str(tmp)):
            found.append(proc.pid)
    return found


def test_demo_delivers_every_event_through_a_worker_kill(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "demo"],
        env=clean_env(TMPDIR=str(tmp_path), WEBHOOKS_REDIS_URL="redis://127.0.0.1:1/0"),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^\s+sent\s+300 events accepted", out, re.M), out
    assert re.search(r"^\s+delivered\s+300 of 300$", out, re.M), out
    assert re.search(r"^\s+lost\s+0$", out, re.M), out
    verified = re.search(r"^\s+signatures verified\s+(\d+) of (\d+) requests", out, re.M)
    assert verified and verified.group(1) == verified.group(2) and int(verified.group(1)) >= 300, out
    dups = re.search(r"^\s+duplicates\s+(\d+)", out, re.M)
    assert dups, out
    assert int(dups.group(1)) == int(verified.group(2)) - 300, "every extra request is a counted duplicate"
    assert "SIGKILL worker-1" in out and "worker-2 started" in out
    took = re.search(r"^\s+took\s+([\d.]+) s$", out, re.M)
    assert took, out
    assert not list(tmp_path.glob("webhooks-demo-*")), "the demo removes its folder"
    assert not _ours(tmp_path), "the demo leaves no process behind"
