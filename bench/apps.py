"""The baselines the producer is compared with, each served as its own process.

``python -m bench.apps bare --port P``
    A FastAPI endpoint that validates the same body (``contracts.AuditEvent``) and answers
    ``202`` without publishing anything: the ceiling of any accept path on this stack.
``python -m bench.apps tutorial --port P`` (``BENCH_CONNECTION_STRING``, ``BENCH_QUEUE``)
    The common tutorial pattern: a ``BackgroundTasks`` task that opens a
    ``ServiceBusClient``, sends one message and closes it. ``GET /stats`` counts sends.
``python -m bench.apps null --port P``
    Not an application: a raw asyncio server that answers every request with a canned
    ``202``, to measure how fast the load generator itself can go.

Both FastAPI apps run under uvicorn with the producer's server settings (uvloop,
httptools, no access log).
"""

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import uuid
from typing import cast

import uvicorn
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
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
    parser.add_argument("kind", choices=["bare", "tutorial", "null"])
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
    else:
        app = tutorial_app(os.environ["BENCH_CONNECTION_STRING"], os.environ["BENCH_QUEUE"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
