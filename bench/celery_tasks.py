"""Celery on the local Redis, as the baseline a team would pick instead of this project.

The broker and the queue come from ``BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``) and ``BENCH_QUEUE``, so every run has its own queue. The
producer side is ``bench.apps celery`` (``record.delay`` in the endpoint); the worker is
Celery's own with its defaults (prefork, one child per core)::

    BENCH_QUEUE=q python -m celery -A bench.celery_tasks worker -Q q --loglevel WARNING

:func:`record` validates the event (as our consumer's decode stage does) and appends
``"<accepted unix s> <done unix s>"`` to the Redis list :func:`done_key` names, from which
the end-to-end scenario takes latencies. It writes nothing durable, unlike the consumer's
audit store.
"""

import os
import time

import redis
from celery import Celery  # type: ignore[import-untyped]

from contracts import AuditEvent

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = os.environ.get("BENCH_QUEUE", "bench")


def done_key(queue: str) -> str:
    """The Redis list where workers of ``queue`` append ``"<accepted> <done>"`` (Unix s)."""
    return f"{queue}:done"


app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_results: redis.Redis | None = None


@app.task(name="bench.record")  # type: ignore[untyped-decorator]
def record(body: str, accepted: float) -> None:
    """Validate an audit event and note when it was handled."""
    global _results
    AuditEvent.model_validate_json(body)
    if _results is None:
        _results = redis.Redis.from_url(REDIS_URL)
    _results.rpush(done_key(QUEUE), f"{accepted} {time.time()}")
