"""The ingest baseline for scenario (d): a FastAPI app whose ``POST /v1/events`` (and ``/v1/events/batch``)
answer 202 ``{}`` and do nothing else, served by uvicorn with the same settings as our API.

Run: ``python -m bench.bare_api --port 8100 [--workers 1] [--loop uvloop] [--http httptools]``.
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/events", status_code=202)
async def post_event() -> JSONResponse:
    return JSONResponse({}, status_code=202)


@app.post("/v1/events/batch", status_code=202)
async def post_batch() -> JSONResponse:
    return JSONResponse({}, status_code=202)


@app.get("/readyz")
async def readyz() -> dict[str, bool]:
    return {"ok": True}


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="bare FastAPI ingest baseline")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", default="uvloop")
    parser.add_argument("--http", default="httptools")
    args = parser.parse_args(argv)
    uvicorn.run(
        "bench.bare_api:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop=args.loop,
        http=args.http,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
