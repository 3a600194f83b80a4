"""Each of the two lifelines of a supervised child works on its own (cli/lifeline.py)."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.poll import poll
from tests.support.up import ROOT, alive

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_parent_death_signal_ends_a_child_whose_parent_was_killed() -> None:
    # A parent that starts `sleep` through the wrapper, says its pid, and waits to be killed.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import subprocess, sys, time
                from cli import lifeline
                child = subprocess.Popen(lifeline.wrap(["sleep", "60"]))
                print(child.pid, flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    poll(lambda: b"sleep" in Path(f"/proc/{child}/cmdline").read_bytes(), what="the wrapper to exec sleep")
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    poll(lambda: not alive(child), timeout_s=10, what="the orphaned child to get SIGTERM")


def test_end_of_the_pipe_stops_a_python_child() -> None:
    read_fd, write_fd = os.pipe()
    code = f"import time\nfrom cli import lifeline\nlifeline.watch({read_fd}, grace_s=5)\ntime.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-c", code], pass_fds=(read_fd,), env=ENV, cwd=ROOT)
    os.close(read_fd)
    try:
        assert child.poll() is None
        os.close(write_fd)  # what the kernel does when the supervisor dies, however it dies
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_the_wrapper_does_not_start_a_child_for_a_parent_that_is_gone() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.lifeline", "1", "--", "sh", "-c", "echo started"],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "started" not in done.stdout
