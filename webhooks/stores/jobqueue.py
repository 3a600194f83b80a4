"""Where the operators' long operations are handed to RQ: replays and recoveries, tenant deletions.

Each runs as an RQ job on its own queue (``keys.RQ_OPERATIONS_QUEUE``, which the worker processes
listen on before the delivery queue), with the resource's id as the job id. The job functions live
in ``workers/operations.py`` and are named here by their import path (RQ resolves them in the worker),
so the domain does not import the workers. A job is resumable (its progress is kept in Redis with
each chunk), so RQ's retries are safe: ``Retry`` re-runs one that raised, and a job whose worker
died is handed back to RQ's abandoned-job handling (``StartedJobRegistry.cleanup``: retried while
retries are left, else moved to the failed registry). Its failure callback marks the resource
``failed`` once no retry is left.
"""

import asyncio

import redis
from rq import Callback, Queue, Retry

from webhooks import keys

JOB_RETRIES = 10  # a resumable job re-run after a crash or its worker's death goes on where it stopped
JOB_TIMEOUT_S = 6 * 3600
RESULT_TTL_S = 7 * 86400
FAILURE_TTL_S = 30 * 86400
REPLAY_JOB = "workers.operations.run_replay"
DELETE_TENANT_JOB = "workers.operations.run_tenant_deletion"
ON_FAILURE = "workers.operations.on_failure"


class OperationQueue:
    """Enqueues the operators' jobs on RQ's Redis (a blocking client, as RQ needs)."""

    def __init__(self, conn: "redis.Redis") -> None:
        self.queue = Queue(keys.RQ_OPERATIONS_QUEUE, connection=conn)

    def _enqueue(self, func: str, job_id: str) -> None:
        self.queue.enqueue(
            func,
            job_id,
            job_id=job_id,
            retry=Retry(max=JOB_RETRIES),
            on_failure=Callback(ON_FAILURE),
            job_timeout=JOB_TIMEOUT_S,
            result_ttl=RESULT_TTL_S,
            failure_ttl=FAILURE_TTL_S,
            description=f"{func.rsplit('.', 1)[-1]} {job_id}",
        )

    async def enqueue_replay(self, replay_id: str) -> None:
        await asyncio.to_thread(self._enqueue, REPLAY_JOB, replay_id)

    async def enqueue_tenant_deletion(self, tenant_id: str) -> None:
        await asyncio.to_thread(self._enqueue, DELETE_TENANT_JOB, tenant_id)
