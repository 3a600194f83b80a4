"""Fixtures of the fault suite: run a scenario in the test's temporary folder and show its report."""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.scenario import Config, Report, run


@pytest.fixture
def scenario(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[Config], Report]:
    """Run a scenario; its report is printed (shown with ``-s`` and on failure) and kept in tmp_path."""

    def go(config: Config) -> Report:
        report = run(config, tmp_path)
        text = report.format()
        (tmp_path / "report.txt").write_text(text + "\n")
        print(f"\n[{request.node.name}] logs and Redis files under {tmp_path}\n{text}")
        return report

    return go
