from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from api.deps import StoreDep
from webhooks.queueing import memory
from webhooks.runtime import metrics as webhooks_metrics

router = APIRouter(tags=["health"])


class Ready(BaseModel):
    status: str
    message: str | None = None


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"model": Ready},
        503: {"model": Ready, "description": "Redis is not reachable, or its memory is full of pending work"},
    },
)
async def readyz(store: StoreDep) -> JSONResponse:
    try:
        use = await memory.usage(store.r)
        level = await store.ingestor.memory.level()
    except Exception:  # noqa: BLE001 - any failure means not ready
        return JSONResponse({"status": "unavailable", "message": "Redis is not reachable"}, status_code=503)
    if level == "full" or (use.max_bytes and use.used_bytes >= use.max_bytes):
        return JSONResponse(
            {
                "status": "storage_full",
                "message": f"Redis memory is full of pending work ({use.used_bytes} of {use.max_bytes} "
                "bytes); new events are refused until deliveries drain it",
            },
            status_code=503,
            headers={"Retry-After": str(memory.RETRY_AFTER_S)},
        )
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition", "content": {"text/plain": {}}}},
)
async def metrics() -> Response:
    """This API process's metrics (every uvicorn worker's together when it runs several).

    Process-local: no Redis read, so it answers while Redis is down. The queue's gauges are
    served by the workers and the scheduler on their own ``WEBHOOKS_METRICS_PORT``.
    """
    body, content_type = webhooks_metrics.exposition()
    return Response(body, media_type=content_type)
