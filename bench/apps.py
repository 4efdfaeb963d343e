"""The baselines the producer is compared with, each served as its own process.

``python -m bench.apps bare --port P``
    A FastAPI endpoint that validates the same body (``contracts.AuditEvent``) and answers
    ``202`` without publishing anything: the ceiling of any accept path on this stack.
``python -m bench.apps tutorial --port P`` (``BENCH_CONNECTION_STRING``, ``BENCH_QUEUE``)
    The common tutorial pattern: a ``BackgroundTasks`` task that opens a
    ``ServiceBusClient``, sends one message and closes it. ``GET /stats`` counts sends.
``python -m bench.apps direct --port P`` (``BENCH_CONNECTION_STRING``, ``BENCH_QUEUE``)
    Direct send without durability: a long-lived ``ServiceBusClient`` and one awaited
    ``send_messages`` per request before the ``202``. Senders are *pooled*, not shared:
    concurrent first sends on one unopened aio sender fail with ``'NoneType' object has no
    attribute 'create_sender_link'``, and serialising them on one sender (a lock) was
    slower than a pool on this machine; each request borrows an open sender (32 are opened
    at start-up; more are opened if more requests are in flight).
``python -m bench.apps celery --port P`` (``BENCH_REDIS_URL``, ``BENCH_QUEUE``)
    ``record.delay(body, accepted)`` of :mod:`bench.celery_tasks` in the endpoint, as
    Celery's FastAPI examples do (a blocking call to Redis on the event loop).
``python -m bench.apps arq --port P`` (``BENCH_REDIS_URL``, ``BENCH_QUEUE``)
    ``await pool.enqueue_job("record", body, accepted)`` on one ARQ pool (:mod:`bench.arq_tasks`).
``python -m bench.apps null --port P``
    Not an application: a raw asyncio server that answers every request with a canned
    ``202``, to measure how fast the load generator itself can go.

The FastAPI apps run under uvicorn with the producer's server settings (uvloop,
httptools, no access log).
"""

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import uvicorn
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from fastapi import BackgroundTasks, FastAPI

from contracts import AuditEvent

logger = logging.getLogger("bench.apps")


def bare_app() -> FastAPI:
    """Validate the body, answer 202, publish nothing."""
    app = FastAPI(title="bare")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/audit-events", status_code=202)
    async def accept(event: AuditEvent) -> dict[str, str]:
        return {"id": str(uuid.uuid4()), "status": "accepted"}

    return app


def tutorial_app(connection_string: str, queue: str) -> FastAPI:
    """``BackgroundTasks`` + a ``ServiceBusClient`` per message, as tutorials show it."""
    app = FastAPI(title="tutorial")
    counts = {"accepted": 0, "sent": 0, "failed": 0}

    async def send_event(body: str, message_id: str) -> None:
        try:
            async with (
                ServiceBusClient.from_connection_string(connection_string) as client,
                client.get_queue_sender(queue) as sender,
            ):
                await sender.send_messages(ServiceBusMessage(body, message_id=message_id))
        except Exception as exc:
            counts["failed"] += 1
            logger.warning("send failed: %r", exc)
            return
        counts["sent"] += 1

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return counts

    @app.post("/v1/audit-events", status_code=202)
    async def accept(event: AuditEvent, background: BackgroundTasks) -> dict[str, str]:
        event_id = str(uuid.uuid4())
        counts["accepted"] += 1
        background.add_task(send_event, event.model_dump_json(), event_id)
        return {"id": event_id, "status": "accepted"}

    return app


PREOPENED_SENDERS = 32
"""Senders the direct-send app opens at start-up: the accept path's highest concurrency."""


def direct_app(connection_string: str, queue: str) -> FastAPI:
    """One awaited send per request over a pool of long-lived senders; no outbox."""
    idle: list[ServiceBusSender] = []
    counts = {"accepted": 0, "sent": 0, "failed": 0}
    state: dict[str, ServiceBusClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with ServiceBusClient.from_connection_string(connection_string) as client:
            state["client"] = client
            # Open the links now, not during the measured load (attaching one is slow:
            # findings §14.21); the pool still grows past this if more are in flight.
            for _ in range(PREOPENED_SENDERS):
                sender = client.get_queue_sender(queue)
                await sender.__aenter__()
                idle.append(sender)
            try:
                yield
            finally:
                for sender in idle:
                    await sender.close()

    async def borrow() -> ServiceBusSender:
        if idle:
            return idle.pop()
        sender = state["client"].get_queue_sender(queue)
        await sender.__aenter__()
        return sender

    app = FastAPI(title="direct", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {**counts, "senders": len(idle)}

    @app.post("/v1/audit-events", status_code=202)
    async def accept(event: AuditEvent) -> dict[str, str]:
        event_id = str(uuid.uuid4())
        sender = await borrow()
        try:
            await sender.send_messages(
                ServiceBusMessage(event.model_dump_json(), message_id=event_id)
            )
        except BaseException:
            counts["failed"] += 1
            await sender.close()
            raise
        idle.append(sender)
        counts["accepted"] += 1
        counts["sent"] += 1
        return {"id": event_id, "status": "accepted"}

    return app


def celery_app() -> FastAPI:
    """``record.delay`` (Celery, Redis broker) in the endpoint."""
    from bench.celery_tasks import record

    app = FastAPI(title="celery")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/audit-events", status_code=202)
    async def accept(event: AuditEvent) -> dict[str, str]:
        result = record.delay(event.model_dump_json(), time.time())
        return {"id": str(result.id), "status": "accepted"}

    return app


def arq_app() -> FastAPI:
    """``enqueue_job`` on one ARQ Redis pool opened in the lifespan."""
    from arq.connections import ArqRedis, RedisSettings, create_pool

    from bench.arq_tasks import QUEUE, REDIS_URL

    pools: list[ArqRedis] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=QUEUE)
        pools.append(pool)
        try:
            yield
        finally:
            await pool.aclose()

    app = FastAPI(title="arq", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/audit-events", status_code=202)
    async def accept(event: AuditEvent) -> dict[str, str]:
        job = await pools[0].enqueue_job("record", event.model_dump_json(), time.time())
        return {"id": job.job_id if job else "", "status": "accepted"}

    return app


_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n"
_OK += b'{"status":"ok"}'
_ACCEPTED = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n"
_ACCEPTED += b'{"status":"accepted"}'


class _NullProtocol(asyncio.Protocol):
    """Answers each complete HTTP/1.1 request (by Content-Length) with a canned response."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            length = 0
            marker = head.find(b"\r\ncontent-length:")
            if marker >= 0:
                stop = head.find(b"\r\n", marker + 2)
                length = int(head[marker + 17 : stop if stop >= 0 else None])
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            assert self._transport is not None
            self._transport.write(_ACCEPTED if head.startswith(b"post") else _OK)


async def _serve_null(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_NullProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apps")
    parser.add_argument("kind", choices=["bare", "tutorial", "direct", "celery", "arq", "null"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.kind == "null":
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(_serve_null(args.port))
        return 0
    if args.kind == "bare":
        app = bare_app()
    elif args.kind == "celery":
        app = celery_app()
    elif args.kind == "arq":
        app = arq_app()
    else:
        factory = tutorial_app if args.kind == "tutorial" else direct_app
        app = factory(os.environ["BENCH_CONNECTION_STRING"], os.environ["BENCH_QUEUE"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
