"""The README's "From Python" example runs as written against the real API."""

import contextlib
import io
import re
from pathlib import Path

from tests.support.api_server import ApiServer
from tests.support.receiver import Receiver

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section has a Python example"
    return match.group(1)


def test_the_readme_python_example_sends_an_event_and_lists_its_deliveries(
    api_server: ApiServer, tenant_key: str, receiver: Receiver
) -> None:
    code = example()
    assert len(code.strip().splitlines()) <= 12, "a short example"
    for placeholder in ("http://127.0.0.1:8000", '"whk_…"', "http://127.0.0.1:9000/hooks"):
        assert placeholder in code
    code = code.replace("http://127.0.0.1:8000", api_server.url).replace('"whk_…"', repr(tenant_key))
    code = code.replace("http://127.0.0.1:9000/hooks", receiver.url("ok/hooks"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"ep_[0-9a-z]{26} pending", lines[0])
    assert lines[1] == "404 not_found no such delivery"
