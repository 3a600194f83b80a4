"""docs/openapi.json, the published OpenAPI document, is what a running API serves at /openapi.json."""

import json

import httpx

from tests.conftest import ROOT

PUBLISHED = ROOT / "docs" / "openapi.json"
REGENERATE = "python -m api.openapi > docs/openapi.json"


def test_the_published_openapi_file_is_what_the_api_serves(api: httpx.Client) -> None:
    served = api.get("/openapi.json")
    assert served.status_code == 200, served.text
    published = json.loads(PUBLISHED.read_text())
    assert published == served.json(), f"docs/openapi.json is out of date: regenerate it with `{REGENERATE}`"


def test_the_regenerating_command_prints_the_same_document() -> None:
    from api.openapi import document

    assert json.loads(json.dumps(document())) == json.loads(PUBLISHED.read_text()), (
        f"docs/openapi.json is out of date: regenerate it with `{REGENERATE}`"
    )
