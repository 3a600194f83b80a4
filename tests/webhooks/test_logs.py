"""webhooks.runtime.logs: the redacting processor, and both formats as a real process renders them."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT
from webhooks.runtime.logs import REDACTED, redact, scrub_text

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from webhooks.runtime import logs
    from webhooks.queueing.queue import LeasedDelivery

    logs.configure(sys.argv[1], "DEBUG")
    d = LeasedDelivery("dlv_1", "ten_1", "evt_1", "ep_1", 0, 0)
    logs.delivery_log(d).info("attempt failed", status_code=500, secret="whsec_c2VjcmV0c2VjcmV0")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("webhooks.api").warning("key %s refused", "whk_abcdefghijklmnopqrstuv")
    try:
        raise ValueError("Authorization: Bearer tok_abcdef0123456789")
    except ValueError:
        logging.getLogger("rq.worker").exception("job failed")
    """
)


def run(fmt: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    return result.stderr.splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("secret whsec_c2VjcmV0c2VjcmV0 here", f"secret whsec_{REDACTED} here"),
        ("key=whk_abcdefghijklmnopqrstuv.", f"key=whk_{REDACTED}."),
        ("wh_0123456789abcdef", f"wh_{REDACTED}"),
        ("whsk_0123456789abcdef", f"whsk_{REDACTED}"),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {REDACTED}"),
        ("basic dXNlcjpwYXNz", f"basic {REDACTED}"),
        (
            "delivery dlv_01m8syhm7b9542e3dafba32207 to ep_01m8",
            "delivery dlv_01m8syhm7b9542e3dafba32207 to ep_01m8",
        ),
        ("which_endpoint whatever_name", "which_endpoint whatever_name"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


def test_redact_replaces_credential_fields_at_any_depth() -> None:
    event = {
        "event": "sent Bearer abcdef",
        "secret": "x",
        "api_key": "y",
        "X-Api-Token": "z",
        "headers": {"Authorization": "Basic q", "accept": "*/*", "nested": [{"password": "p"}]},
        "delivery_id": "dlv_1",
        "status_code": 500,
    }

    out = redact(None, "info", event)

    assert out == {
        "event": f"sent Bearer {REDACTED}",
        "secret": REDACTED,
        "api_key": REDACTED,
        "X-Api-Token": REDACTED,
        "headers": {"Authorization": REDACTED, "accept": "*/*", "nested": [{"password": REDACTED}]},
        "delivery_id": "dlv_1",
        "status_code": 500,
    }


def test_json_format_is_one_object_per_line_for_structlog_and_stdlib_records() -> None:
    lines = run("json")

    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    assert [r["logger"] for r in records] == [
        "webhooks.delivery",
        "uvicorn.error",
        "webhooks.api",
        "rq.worker",
    ]
    delivery = records[0]
    assert {k: delivery[k] for k in ("tenant_id", "event_id", "delivery_id", "endpoint_id")} == {
        "tenant_id": "ten_1",
        "event_id": "evt_1",
        "delivery_id": "dlv_1",
        "endpoint_id": "ep_1",
    }
    assert delivery["message"] == "attempt failed" and delivery["level"] == "info"
    assert delivery["secret"] == REDACTED
    assert delivery["timestamp"].endswith("Z")
    assert records[1]["message"] == "Started server process [42]"
    assert records[2]["message"] == f"key whk_{REDACTED} refused"
    assert "ValueError" in records[3]["exception"] and "tok_abcdef" not in records[3]["exception"]
    assert "whsec_c2Vj" not in "\n".join(lines)


def test_text_format_is_readable_lines_with_the_fields() -> None:
    lines = run("text")

    assert lines[0].split(" ", 1)[1].startswith("[info     ] attempt failed")
    assert (
        "delivery_id=dlv_1" in lines[0]
        and "endpoint_id=ep_1" in lines[0]
        and "[webhooks.delivery]" in lines[0]
    )
    assert f"secret={REDACTED}" in lines[0]
    assert "Started server process [42]" in lines[1] and "[uvicorn.error]" in lines[1]
    assert any(line.startswith("Traceback") for line in lines), "the traceback is printed as such"
    assert "tok_abcdef" not in "\n".join(lines)
    for line in lines[:3]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
