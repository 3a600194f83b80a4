"""The client imports nothing of the server: not its packages, not Redis, RQ, FastAPI or uvicorn."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("webhooks", "api", "workers", "cli", "redis", "rq", "fastapi", "uvicorn"):
            raise ImportError("refused: " + name)

sys.meta_path.insert(0, Refuse())
import hookyard_client
from hookyard_client import AsyncClient, Client
Client("http://127.0.0.1:1", "whk_x").close()
print("ok")
"""


def test_client_imports_without_the_server_or_redis() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
