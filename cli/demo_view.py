"""What ``webhooks demo`` shows: a live rich view on a terminal, plain lines otherwise, and the summary."""

import time
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


@dataclass
class DemoState:
    total: int
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    sent: int = 0
    delivered: int = 0
    duplicates: int = 0
    requests: int = 0
    verified: int = 0
    ready: int = 0
    in_flight: int = 0
    retrying: int = 0
    workers: dict[str, str] = field(default_factory=dict)  # name -> "running" / "killed (pid N)"
    timeline: list[tuple[float, str]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class DemoSummary:
    events: int
    sent: int
    delivered: int
    lost: int
    duplicates: int
    duplicates_sent_before_kill: int
    reclaimed: int  # deliveries the killed worker's lease still held, handed back by the scheduler
    requests: int
    verified: int
    rejected: int
    killed_at_event: int
    in_flight_at_kill: int
    lease_ttl_s: float
    server: str
    took_s: float

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.delivered == self.events and self.verified == self.requests

    def why_duplicates(self) -> str:
        held = plural(self.reclaimed, "delivery", "deliveries")
        if not self.duplicates:
            return f" (the {held} its lease held had not reached the receiver yet)" if self.reclaimed else ""
        who = (
            "sent by worker-1 just before its SIGKILL"
            if self.duplicates == self.duplicates_sent_before_kill
            else (f"{self.duplicates_sent_before_kill} first sent by worker-1 before its SIGKILL")
        )
        return (
            f" ({who}, outcome never recorded: its lease held {held} until it expired after "
            f"{self.lease_ttl_s:g} s, then worker-2 sent {'it' if self.duplicates == 1 else 'them'} again; "
            "receivers dedupe on webhook-id)"
        )

    def rows(self) -> list[tuple[str, str]]:
        busy = plural(self.in_flight_at_kill, "request")
        return [
            ("sent", f"{self.sent} events accepted (202)"),
            ("delivered", f"{self.delivered} of {self.events}"),
            ("lost", str(self.lost)),
            ("duplicates", f"{self.duplicates}{self.why_duplicates()}"),
            ("signatures verified", f"{self.verified} of {self.requests} requests (standardwebhooks)"),
            ("worker-1 SIGKILLed", f"after event {self.killed_at_event}, with {busy} in flight"),
            ("redis", self.server),
            ("took", f"{self.took_s:.1f} s"),
        ]


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def _bar(label: str, done: int, total: int, note: str = "") -> Table:
    row = Table.grid(padding=(0, 1))
    row.add_column(width=11)
    row.add_column(width=40)
    row.add_column()
    row.add_row(
        label,
        ProgressBar(total=max(total, 1), completed=min(done, total), width=40),
        f"{done}/{total} {note}",
    )
    return row


def render(state: DemoState) -> RenderableType:
    workers = "  ".join(
        f"[green]{n} ✓ {s}[/]" if s == "running" else f"[red]{n} ✗ {s}[/]" for n, s in state.workers.items()
    )
    numbers = Table.grid(padding=(0, 2))
    numbers.add_column(style="bold", width=11)
    numbers.add_column()
    numbers.add_row(
        "backlog", f"{state.ready} ready · {state.in_flight} under a lease · {state.retrying} retrying"
    )
    numbers.add_row("workers", workers or "-")
    numbers.add_row(
        "receiver",
        f"{state.requests} requests · {state.verified} signatures verified · "
        + plural(state.duplicates, "duplicate"),
    )
    timeline = Text()
    for at, what in state.timeline[-8:]:
        timeline.append(f"{at:5.1f}s  ", style="dim")
        timeline.append(what + "\n")
    body = Group(
        Text(state.phase, style="bold yellow"),
        Text(""),
        _bar("sent", state.sent, state.total),
        _bar("delivered", state.delivered, state.total),
        Text(""),
        numbers,
        Text(""),
        timeline,
    )
    return Panel(body, title="webhooks demo: a worker SIGKILLed mid-way", subtitle=f"{state.elapsed():.1f}s")


def print_summary(console: Console, summary: DemoSummary) -> None:
    style = "green" if summary.ok else "red"
    if console.is_terminal:
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in summary.rows():
            table.add_row(name, value)
        console.print(Panel(table, title="summary", border_style=style))
        return
    print("summary")
    for name, value in summary.rows():
        print(f"  {name:<20} {value}")
