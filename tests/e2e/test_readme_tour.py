"""The README's tour runs as written: its ``<!-- tour -->`` blocks, in order, with bash, in the folder
of a real ``webhooks up --dev`` (the receiver is the tour's own). So the tour cannot drift from
what the platform does."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_proc import free_port
from tests.support.up import ROOT, UpProcess, clean_env

MARK = "<!-- tour -->"


def tour_blocks(readme: str) -> list[str]:
    """The ```sh blocks that follow a ``<!-- tour -->`` line, in order."""
    return re.findall(rf"^{re.escape(MARK)}\n```sh\n(.*?)^```$", readme, re.S | re.M)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    started = UpProcess(tmp_path / ".webhooks", free_port(), clean_env(), cwd=tmp_path)
    yield started
    started.cleanup()


def test_the_readme_tour_runs_as_written_against_up_dev(tmp_path: Path, up: UpProcess) -> None:
    blocks = tour_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 6, "the tour's blocks carry their markers"
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the README's .venv/bin/webhooks
    up.env.pop("WEBHOOKS_DATA_DIR")  # the default ./.webhooks, as in the README
    up.start("--dev", "--workers", "1")
    summary = up.wait_summary()
    assert "dev mode:     private and loopback targets allowed; retries after 1,2,4 s" in summary, summary

    script = "set -euo pipefail\n" + "\n".join(blocks)
    tour = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**clean_env(), "PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = tour.communicate(timeout=120)
    finally:
        if tour.poll() is None:
            os.killpg(tour.pid, signal.SIGKILL)  # the tour's shell and its receiver
            tour.wait()
    assert tour.returncode == 0, out + up.logs()
    assert out.count("receiver got") >= 3 + 3, out  # in_1, in_2 after resuming, in_3's attempts, the replay
    assert '"state": "paused"' in out or "'state': 'paused'" in out, out
    assert re.search(r"state\s+paused", out) and re.search(r"ready\s+1", out), out  # webhooks endpoint show
    assert '"status":"dead"' in out and '"matched":1' in out, out
    assert re.search(r'"state":"done".*"succeeded":1', out) or re.search(
        r'"succeeded":1.*"state":"done"', out
    ), out
    assert "endpoints not healthy" in out, out  # webhooks status
