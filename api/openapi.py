"""The API's OpenAPI document, as ``GET /openapi.json`` serves it, printed without a running API.

``python -m api.openapi > docs/openapi.json`` regenerates the published copy; a test
(tests/api/test_openapi_file.py) keeps that file equal to what a running API serves.
"""

import json
import sys
from typing import Any

from api.app import ApiConfig, create_app
from webhooks.outbound.secretbox import SecretBox
from webhooks.runtime.connection import RedisTarget
from webhooks.stores.policy import Policy


def document() -> dict[str, Any]:
    """The schema of an app built with default settings (nothing connects to Redis to build it)."""
    config = ApiConfig(
        target=RedisTarget("redis://127.0.0.1:0/0"), box=SecretBox(None), policy=Policy(), admin_token=None
    )
    schema: dict[str, Any] = create_app(config).app.openapi()
    return schema


def main() -> None:
    sys.stdout.write(json.dumps(document(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
