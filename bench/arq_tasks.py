"""ARQ on the local Redis, as the baseline a team would pick instead of this project.

``python -m bench.arq_tasks`` runs an ARQ worker with ARQ's defaults (10 jobs at once,
the queue polled every 0.5 s, results kept for an hour) on the queue ``BENCH_QUEUE`` of
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``); ``bench.apps arq`` enqueues.
:func:`record` validates the event and appends ``"<accepted unix s> <done unix s>"`` to
the Redis list ``<queue>:done`` (see :func:`bench.celery_tasks.done_key`).
"""

import os
import sys
import time
from typing import Any, ClassVar

from arq.connections import RedisSettings
from arq.worker import run_worker

from contracts import AuditEvent

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")


async def record(ctx: dict[str, Any], body: str, accepted: float) -> None:
    """Validate an audit event and note when it was handled."""
    AuditEvent.model_validate_json(body)
    await ctx["redis"].rpush(f"{QUEUE}:done", f"{accepted} {time.time()}")


class WorkerSettings:
    """What ``arq`` reads; everything not named here is ARQ's default."""

    functions: ClassVar[list[Any]] = [record]
    queue_name = QUEUE
    redis_settings = RedisSettings.from_dsn(REDIS_URL)


def main() -> int:
    run_worker(WorkerSettings)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
