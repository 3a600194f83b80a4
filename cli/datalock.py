"""One owner per data folder: an exclusive ``flock`` on ``<data>/lock``, which holds the owner's pid.

``webhooks up`` takes it before anything else and hands the open file to the embedded Redis it
starts (``pass_fds``), so the lock lasts as long as either of them lives: a second ``up`` on the
same folder is refused while the first one or its server still runs, and two servers never
append to the same AOF files. The kernel drops the lock when the last holder dies, however it
dies, so a crash leaves no stale lock behind (the pid written in the file may stay; it is only
read to name the holder).
"""

import fcntl
import os
from pathlib import Path

from webhooks.errors import ConfigError

LOCK_FILE = "lock"


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"process {pid} (no longer running; the server it started is still stopping)"
    return f"process {pid} ({cmd[:120]})" if cmd else f"process {pid}"


class DataLock:
    """An exclusive lock on a data folder; :meth:`acquire` raises :class:`ConfigError` naming the holder."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, folder: Path, pid: int | None = None) -> "DataLock":
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            who = _describe(int(holder)) if holder.isdigit() else "another process"
            raise ConfigError(
                f"the data folder {folder} is in use by {who}: stop that one first, "
                "or set WEBHOOKS_DATA_DIR to another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid or os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @staticmethod
    def held(folder: Path) -> bool:
        """Whether some process holds the folder's lock now (checked without taking it for long)."""
        path = folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
