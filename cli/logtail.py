"""``webhooks up --verbose``: follow the children's log files and copy new lines to the terminal.

The children write to their files directly (so their logs survive this process), and one
thread here polls the files for new complete lines, prefixing each with the file's name.
"""

import sys
import threading
from pathlib import Path


class LogTail:
    def __init__(self, log_dir: Path, interval_s: float = 0.2) -> None:
        self.log_dir = log_dir
        self.interval_s = interval_s
        # Files are followed from their current end: earlier runs' lines are not replayed.
        self.offsets: dict[Path, int] = {p: p.stat().st_size for p in log_dir.glob("*.log")}
        self.partial: dict[Path, bytes] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="log-tail", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2)
        self._poll()

    def _run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self._poll()

    def _poll(self) -> None:
        for path in sorted(self.log_dir.glob("*.log")):
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(path, 0))
                    data = f.read()
            except OSError:
                continue
            if not data:
                continue
            self.offsets[path] = self.offsets.get(path, 0) + len(data)
            *lines, rest = (self.partial.pop(path, b"") + data).split(b"\n")
            if rest:
                self.partial[path] = rest
            for line in lines:
                sys.stdout.write(f"{path.stem:>10} | {line.decode(errors='replace')}\n")
            sys.stdout.flush()
