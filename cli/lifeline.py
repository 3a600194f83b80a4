"""Children that never outlive their supervisor (``webhooks up``, ``webhooks demo``).

Two mechanisms; either alone ends the children on Linux, together they leave no gap:

1. **Parent-death signal.** Every child is started through this module
   (``python -m cli.lifeline PARENT_PID -- ARGV...``, see :func:`wrap`): it asks the kernel
   (``prctl(PR_SET_PDEATHSIG, SIGTERM)``) to send it SIGTERM when its parent dies, checks that its
   parent is still the process that started it (if not, the parent died before the request took
   effect and it exits at once), then ``exec``s ARGV. The setting survives ``exec``, so even a
   ``redis-server``, which we cannot change, is covered from its first instruction.
   Linux sends the signal when the parent *thread* that forked the child ends, so supervisors
   start children from their main thread only.
2. **A pipe.** The supervisor keeps the only write end of a pipe and hands each child the read
   end (its number travels in ``_WEBHOOKS_LIFELINE_FD``). A Python child (``python -m cli ...``)
   calls :func:`watch_from_env` first thing: a daemon thread blocks reading the pipe, and end of
   file means the supervisor is gone, however it died (``kill -9``, the OOM killer). The child
   then sends itself SIGTERM (its normal graceful stop) and exits for sure after ``GRACE_S``.

``GRACE_S`` is short (1 s) on purpose: an idle child finishes its graceful stop well within it
(measured 0.1-0.6 s: the API, an idle RQ worker, the scheduler), but a worker with requests in
flight would wait for them (up to ``WEBHOOKS_REQUEST_TIMEOUT_S``, 15 s by default: measured 15.0 s
before this bound). Those deliveries are not lost: their leases stop being extended, and the next
``webhooks up`` on the folder (or another worker) reclaims and sends them again, exactly as after a
worker's own ``kill -9``. So nothing of a dead supervisor runs 2 s after its death
(tests/e2e/test_up.py). An orderly stop (Ctrl-C, SIGTERM of the supervisor) is unaffected: the
supervisor stops its children itself, waiting for in-flight requests, before it closes the pipe.
"""

import ctypes
import os
import signal
import sys
import threading
import time

ENV_FD = "_WEBHOOKS_LIFELINE_FD"
ENV_ARMED = "_WEBHOOKS_PDEATHSIG"  # set by the wrapper when the kernel will send SIGTERM itself
PR_SET_PDEATHSIG = 1
GRACE_S = 1.0  # after the supervisor's death; see the module docstring


def set_parent_death_signal(signum: int = signal.SIGTERM) -> bool:
    """Ask Linux for ``signum`` when the parent dies; False where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def wrap(argv: list[str]) -> list[str]:
    """``argv`` started through the parent-death wrapper, bound to this process as its parent."""
    return [sys.executable, "-m", "cli.lifeline", str(os.getpid()), "--", *argv]


def watch(fd: int, grace_s: float = GRACE_S, *, signalled: bool = False) -> threading.Thread:
    """A daemon thread that stops this process when the pipe ``fd`` reaches end of file.

    ``signalled``: the parent-death signal already sends SIGTERM, so the thread does not send a
    second one (RQ takes a second SIGTERM as "stop now, abandon the work in hand").
    """

    def run() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        if not signalled:
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=run, name="lifeline", daemon=True)
    thread.start()
    return thread


def watch_from_env() -> threading.Thread | None:
    """Watch the supervisor's pipe when this process was started by one (no-op otherwise)."""
    value = os.environ.pop(ENV_FD, None)
    signalled = os.environ.pop(ENV_ARMED, None) == "1"
    if not value or not value.isdigit():
        return None
    return watch(int(value), signalled=signalled)


def main(argv: list[str]) -> None:
    """``python -m cli.lifeline PARENT_PID -- ARGV...``: arm the parent-death signal, then exec."""
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m cli.lifeline PARENT_PID -- ARGV...", file=sys.stderr)
        raise SystemExit(2)
    if set_parent_death_signal(signal.SIGTERM):
        os.environ[ENV_ARMED] = "1"
    if os.getppid() != int(argv[0]):
        raise SystemExit(1)  # the supervisor died before the parent-death signal was armed
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
