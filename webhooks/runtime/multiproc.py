"""The folder where several API worker processes keep their metrics (prometheus-client's
multiprocess mode). Kept apart from :mod:`webhooks.runtime.metrics` because it must run before any metric
exists: prometheus-client picks its storage when a metric is created.
"""

import atexit
import os
import shutil
import tempfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_dir() -> str:
    """Make this process's children (uvicorn workers) share their metrics through files.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` when set (created if missing, emptied first: files of an
    earlier run would be counted again), else a new temporary folder removed at exit. Call it
    before the children start; they import prometheus-client after it (uvicorn spawns them).
    """
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
        return path
    path = tempfile.mkdtemp(prefix="webhooks-api-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, True)
    return path
