"""``uvicorn api.main:app --factory``: the API built from the environment's settings."""

import os

from api.app import ApiConfig, create_app
from api.ingest import FastIngest
from webhooks.runtime import gcpolicy, logs
from webhooks.settings import load
from webhooks.wiring import box_of, policy_of, target_of


def app() -> FastIngest:
    s = load()
    logs.configure(s.log_format, s.log_level)  # again in each spawned uvicorn worker
    app = create_app(
        ApiConfig(
            target=target_of(s),
            box=box_of(s),
            policy=policy_of(s),
            admin_token=s.admin_token.get_secret_value() if s.admin_token else None,
            portal_frame_ancestors=s.portal_frame_ancestors,
            # The server process: uvicorn's own, or its supervisor when it runs several workers.
            format_watch_pid=os.getppid() if s.api_workers > 1 else os.getpid(),
        )
    )
    gcpolicy.tune()  # the app is built: what it holds for its life is out of the collector's way
    return app
