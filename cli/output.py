"""How operator commands print: rich tables on a terminal, aligned plain text otherwise, JSON on ``--json``.

Results go to stdout; messages, counts and progress bars to stderr, so ``> file`` or a pipe
receives only the data. Progress bars appear only when stderr is a terminal.
"""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


class Ticker:
    """A progress bar's handle: ``advance`` and ``total``; does nothing when no bar is shown."""

    def __init__(self, progress: Progress | None = None, task: Any = None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def total(self, total: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=total)


class Out:
    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)

    @property
    def rich(self) -> bool:
        return self.console.is_terminal and not self.json_mode

    def json(self, value: Any) -> None:
        print(json.dumps(value, default=str), flush=True)

    def note(self, text: str) -> None:
        """A message for the person (stderr), never part of the data."""
        self.err.print(text, markup=False, highlight=False)

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def table(self, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [["-" if v is None else str(v) for v in row] for row in rows]
        if self.rich:
            table = Table(
                title=title,
                title_justify="left",
                title_style="bold",
                header_style="bold",
                box=box.SIMPLE_HEAD,
                pad_edge=False,
                collapse_padding=True,
            )
            for name in columns:
                table.add_column(name, overflow="fold")
            for row in cells:
                table.add_row(*row)
            self.console.print(table)
            return
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        if title:
            print(title)
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

    def fields(self, title: str | None, pairs: Sequence[tuple[str, Any]]) -> None:
        """A two-column "name: value" block."""
        if self.rich:
            table = Table(
                title=title,
                title_justify="left",
                title_style="bold",
                show_header=False,
                box=None,
                padding=(0, 1, 0, 2),
            )
            table.add_column()
            table.add_column(overflow="fold")
            for name, value in pairs:
                table.add_row(name, "-" if value is None else str(value))
            self.console.print(table)
            return
        if title:
            print(title)
        width = max(len(n) for n, _ in pairs)
        for name, value in pairs:
            print(f"  {name.ljust(width)}  {'-' if value is None else value}")

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Ticker]:
        if not self.err.is_terminal:
            yield Ticker()
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.err, transient=True) as progress:
            yield Ticker(progress, progress.add_task(description, total=total))
