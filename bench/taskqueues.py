"""Celery and ARQ on the local Redis as systems under test: enqueue endpoint, worker, results.

Each use gets a queue of its own (:func:`new_queue`) in the Redis database of
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``, which nothing else on this
machine uses); :func:`drop` deletes its keys afterwards. Workers append ``"<accepted unix
s> <done unix s>"`` per job to ``<queue>:done`` (:mod:`bench.celery_tasks`,
:mod:`bench.arq_tasks`), which :func:`done_pairs` reads back.
"""

import os
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import psutil
from redis.asyncio import Redis

from bench.support import audit_bodies, wait_until
from bench.systems import Service, start_app
from tools.processes import ManagedProcess

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
"""Where the Celery and ARQ baselines keep their queues (a database of its own)."""
KINDS = ("celery", "arq")


def new_queue(kind: str) -> str:
    """A queue name no other run uses."""
    return f"bench-{kind}-{os.getpid()}-{time.time_ns() % 10**9}"


def _env(queue: str) -> dict[str, str]:
    return {"BENCH_REDIS_URL": REDIS_URL, "BENCH_QUEUE": queue}


def start_enqueue_app(workdir: Path, kind: str, queue: str) -> Service:
    """``bench.apps celery|arq``: ``POST /v1/audit-events`` enqueues a job on ``queue``."""
    return start_app(workdir, kind, _env(queue))


def start_worker(workdir: Path, kind: str, queue: str) -> ManagedProcess:
    """The framework's own worker, at its defaults, consuming ``queue`` (not yet ready)."""
    if kind == "celery":
        args = ["-A", "bench.celery_tasks", "worker", "-Q", queue, "--loglevel", "WARNING"]
        return ManagedProcess(
            "celery-worker", "celery", args=args, env=_env(queue), log_dir=workdir
        )
    return ManagedProcess("arq-worker", "bench.arq_tasks", env=_env(queue), log_dir=workdir)


@asynccontextmanager
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def check_redis() -> str | None:
    """Why the bench's Redis cannot be used, or ``None`` when it answers ``PING``."""
    try:
        async with redis_client() as client:
            await cast(Awaitable[bool], client.ping())
    except Exception as exc:
        return f"Redis at {REDIS_URL} (BENCH_REDIS_URL) unreachable: {exc}"
    return None


async def done_pairs(queue: str) -> list[tuple[float, float]]:
    """(accepted, done) Unix seconds of every job the workers of ``queue`` finished."""
    async with redis_client() as client:
        # redis-py types its commands for the sync and async clients at once.
        raw = await cast(Awaitable[list[bytes]], client.lrange(f"{queue}:done", 0, -1))
    pairs = []
    for item in raw:
        accepted, done = item.split()
        pairs.append((float(accepted), float(done)))
    return pairs


async def done_count(queue: str) -> int:
    async with redis_client() as client:
        return await cast(Awaitable[int], client.llen(f"{queue}:done"))


async def drop(queue: str) -> None:
    """Delete ``queue``'s keys, and ARQ's job and result keys, from the bench database."""
    async with redis_client() as client:
        keys = [queue, f"{queue}:done", f"_kombu.binding.{queue}"]
        keys += [key async for key in client.scan_iter(match="arq:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])


async def wait_ready(service: Service, worker: ManagedProcess, queue: str) -> None:
    """Send one event through the endpoint and wait until a worker has handled it; then
    forget it, so that counts start at zero.

    Raises:
        RuntimeError: the worker exited or handled nothing within 60 s.
    """
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{service.base_url}/v1/audit-events",
            content=audit_bodies(1)[0],
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()

    async def handled() -> bool:
        if worker.process.poll() is not None:
            raise RuntimeError(f"{worker.name} exited; see {worker.log_path}")
        return await done_count(queue) >= 1

    if not await wait_until(handled, within=60, interval=0.2):
        raise RuntimeError(f"{worker.name} handled nothing in 60 s; see {worker.log_path}")
    async with redis_client() as redis:
        await redis.delete(f"{queue}:done")


@dataclass
class QueueSystem:
    """An enqueue endpoint and, for end to end, a worker, on one queue."""

    kind: str
    queue: str
    app: Service
    worker: ManagedProcess | None

    def pids(self) -> dict[str, int]:
        """The endpoint's process (the worker is :meth:`worker_processes`)."""
        return {f"{self.kind}-app": self.app.pid}

    def worker_processes(self) -> list[psutil.Process]:
        """The worker and its children (Celery's prefork pool), for CPU sampling."""
        if self.worker is None:
            return []
        try:
            parent = psutil.Process(self.worker.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.Error:
            return []


@asynccontextmanager
async def queue_system(workdir: Path, kind: str, *, worker: bool) -> AsyncIterator[QueueSystem]:
    """Start the endpoint (and a ready worker); stop them and drop the keys on exit."""
    queue = new_queue(kind)
    app = start_enqueue_app(workdir, kind, queue)
    process: ManagedProcess | None = None
    try:
        if worker:
            process = start_worker(workdir, kind, queue)
            await wait_ready(app, process, queue)
        yield QueueSystem(kind, queue, app, process)
    finally:
        if process is not None:
            process.stop()
        app.stop()
        await drop(queue)
