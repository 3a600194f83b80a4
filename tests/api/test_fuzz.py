"""Schemathesis against the live OpenAPI document of the running API server.

Every operation gets its examples, coverage cases (boundaries, negative values) and random
cases (``-n`` per operation), plus schemathesis' stateful phase. Checks: no 5xx, responses match
their declared schema, and every status is one the document declares. Run once with a tenant
key and once with the admin token. ``FUZZ_SEED`` and ``FUZZ_EXAMPLES`` override the defaults.

The schemathesis CLI runs as a subprocess (its own warnings and event loop stay out of this
process); its JSON report gives the case count and the failures.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import post_event
from tests.conftest import ADMIN_TOKEN
from tests.support.api_server import ApiServer

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
SEED = int(os.environ.get("FUZZ_SEED", "20261129"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


def run_schemathesis(base_url: str, token: str, workdir: Path) -> dict[str, Any]:
    report = workdir / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",  # CPython 3.11's ast.parse is not thread-safe; hypothesis parses lambdas while drawing
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--warnings",
        "off",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=240, check=False)
    assert report.exists(), (
        f"schemathesis wrote no report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    result: dict[str, Any] = json.loads(report.read_text())
    (workdir / "output.txt").write_text(proc.stdout + proc.stderr)
    result["_output"] = proc.stdout[-20000:] + proc.stderr[-5000:]
    return result


def check(result: dict[str, Any], who: str, capsys: pytest.CaptureFixture[str]) -> None:
    cases = result["test_cases"]
    with capsys.disabled():
        print(
            f"\n[fuzz:{who}] seed {result['seed']}: {cases['generated']} cases on "
            f"{result['operations']['tested']} operations, {cases['with_failures']} with failures"
        )
    assert result["failures"] == [] and result["errors"] == [], result["_output"]
    assert result["exit_code"] == 0, result["_output"]
    assert result["operations"]["tested"] == result["operations"]["total"] >= 20
    assert result["phases"]["fuzzing"]["status"] == "success", result["phases"]
    assert cases["generated"] >= EXAMPLES * 20, cases


@pytest.fixture
def seeded(api: httpx.Client, make_tenant: Callable[..., Any]) -> Any:
    """A tenant with an endpoint and events, so lists and lookups return real objects too."""
    t = make_tenant("fuzz")
    api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook"}, headers=t.auth)
    for i in range(3):
        post_event(api, t.auth, "invoice.paid", {"i": i})
    return t


def test_fuzz_with_a_tenant_key(
    api_server: ApiServer, seeded: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(run_schemathesis(api_server.url, seeded.api_key, tmp_path), "tenant", capsys)


def test_fuzz_with_the_admin_token(
    api_server: ApiServer, seeded: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check(run_schemathesis(api_server.url, ADMIN_TOKEN, tmp_path), "admin", capsys)
