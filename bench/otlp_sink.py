"""A local OTLP/HTTP sink: ``python -m bench.otlp_sink --port P``.

Stands in for an OpenTelemetry collector so that the producer and consumer can run with
their shipped telemetry (``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:P``) without
sending anything off the machine. It accepts ``POST /v1/traces``, ``/v1/metrics`` and
``/v1/logs`` (the OTLP/HTTP paths,
https://opentelemetry.io/docs/specs/otlp/#otlphttp-request) and answers each ``200`` with
an empty body, which decodes as an empty ``Export*ServiceResponse`` (full success) in both
the protobuf and the JSON encodings. Nothing is decoded or kept: only requests and bytes
per path are counted, so the sink costs as little CPU as possible on the shared cores.
``GET /stats`` answers those counts as JSON, e.g.
``{"/v1/traces": {"requests": 12, "bytes": 48211}}``; any other path is ``404``.

Hand-written on raw asyncio (like ``bench.apps null``) rather than a web framework or a
real collector: the sink must be far cheaper than the processes it listens to.
"""

import argparse
import asyncio
import contextlib
import json
import sys
from collections import defaultdict
from typing import cast

OTLP_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")
"""The OTLP/HTTP signal paths the sink accepts."""

_EMPTY_200 = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
_LENGTH_REQUIRED = b"HTTP/1.1 411 Length Required\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class Counts:
    """Requests and body bytes received per path."""

    def __init__(self) -> None:
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.bytes: defaultdict[str, int] = defaultdict(int)

    def to_json(self) -> bytes:
        return json.dumps(
            {p: {"requests": self.requests[p], "bytes": self.bytes[p]} for p in OTLP_PATHS}
        ).encode()


class _SinkProtocol(asyncio.Protocol):
    """Parses HTTP/1.1 requests framed by ``Content-Length`` (what the OTLP exporters send)."""

    def __init__(self, counts: Counts) -> None:
        self._counts = counts
        self._buffer = bytearray()
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self._transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0].decode("latin-1")
            length = 0
            marker = head.find(b"\r\ncontent-length:")
            if marker >= 0:
                stop = head.find(b"\r\n", marker + 2)
                length = int(head[marker + 17 : stop if stop >= 0 else None])
            elif b"\r\ntransfer-encoding:" in head:
                # Chunked bodies are not parsed: refuse and close rather than misframe.
                self._transport.write(_LENGTH_REQUIRED)
                self._transport.close()
                return
            total = end + 4 + length
            if len(self._buffer) < total:
                return
            del self._buffer[:total]
            self._transport.write(self._answer(method, path, length))

    def _answer(self, method: bytes, path: str, length: int) -> bytes:
        if method == b"post" and path in OTLP_PATHS:
            self._counts.requests[path] += 1
            self._counts.bytes[path] += length
            return _EMPTY_200
        if method == b"get" and path == "/stats":
            body = self._counts.to_json()
            head = (
                f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
            )
            return head.encode() + b"\r\n\r\n" + body
        if method == b"get" and path == "/healthz":
            return b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        return _NOT_FOUND


async def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve until cancelled."""
    counts = Counts()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _SinkProtocol(counts), host, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
