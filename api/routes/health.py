from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from api.deps import StoreDep
from api.errors import responses
from webhooks import memory, queue

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


@router.get("/metrics", response_class=PlainTextResponse, responses=responses(503))
async def metrics(store: StoreDep) -> str:
    d = await queue.depths(store.r)
    lines = [
        "# HELP webhooks_queue_depth Deliveries by queue state.",
        "# TYPE webhooks_queue_depth gauge",
        f'webhooks_queue_depth{{state="ready"}} {d.ready}',
        f'webhooks_queue_depth{{state="due"}} {d.due}',
        f'webhooks_queue_depth{{state="dead"}} {d.dead}',
        "# HELP webhooks_leases_active Batches currently leased by workers.",
        "# TYPE webhooks_leases_active gauge",
        f"webhooks_leases_active {d.leases}",
    ]
    for name in (
        "events_accepted",
        "attempts_succeeded",
        "attempts_failed",
        "deliveries_dead",
        "deliveries_reclaimed",
    ):
        lines += [f"# TYPE webhooks_{name}_total counter", f"webhooks_{name}_total {d.counters.get(name, 0)}"]
    return "\n".join(lines) + "\n"
