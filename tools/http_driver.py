"""Send pre-built HTTP/1.1 POSTs over keep-alive connections and keep every answer.

``make run`` must know the status and body of each request it sends (every accepted event
id, every ``422``) without the client becoming what it measures. Hand-written on asyncio
streams rather than httpx because, against ``python -m bench.apps null`` (a server that
answers at once), httpx's own CPU per request became the ceiling of the run, and this
loop's is two orders of magnitude smaller (docs/benchmarks/findings.md §14.20);
``bench.loadgen`` is as cheap but keeps only status counts. It speaks just enough HTTP/1.1
for the producer: one request at a time per keep-alive connection, responses framed by
``Content-Length``.
"""

import asyncio
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_CONNECTION_CLOSE = b"\r\nconnection: close"


@dataclass(frozen=True)
class Answer:
    """What came back for one request.

    Attributes:
        status: HTTP status code; ``0`` when the request failed before a whole response
            arrived (then ``error`` says why).
        body: Response body (empty on failure).
        error: ``"<exception type>: <message>"`` for a transport failure, else ``None``.
    """

    status: int
    body: bytes = b""
    error: str | None = None


class ProtocolError(Exception):
    """The server sent a response this client cannot frame (no ``Content-Length``)."""


def build_post(host: str, port: int, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """One complete ``POST`` request as bytes: request line, ``Host``, ``headers``,
    ``Content-Type: application/json``, ``Content-Length``, then ``body``."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


_FAILURES = (
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,  # a malformed status line or Content-Length
    ProtocolError,
)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    async def exchange(self, payload: bytes) -> Answer:
        self.writer.write(payload)
        head = await self.reader.readuntil(_HEAD_END)
        lower = head.lower()
        start = lower.find(_CONTENT_LENGTH)
        if start < 0:
            kind = "chunked" if _CHUNKED in lower else "unframed"
            raise ProtocolError(f"{kind} response without Content-Length")
        end = lower.find(b"\r\n", start + 2)
        length = int(lower[start + len(_CONTENT_LENGTH) : end])
        body = await self.reader.readexactly(length) if length else b""
        if _CONNECTION_CLOSE in lower:
            self.close()
        return Answer(int(head[9:12]), body)

    def close(self) -> None:
        self.closed = True
        self.writer.close()


async def post_all(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    *,
    concurrency: int,
    on_answer: Callable[[int, Answer], None],
    request_timeout: float = 30.0,
) -> None:
    """Send each of ``payloads`` (from :func:`build_post`) once, ``concurrency`` at a time.

    Each of ``concurrency`` connections sends its next request as soon as the previous
    answer arrived. A failed request is never retried, since the server may have applied a
    POST whose answer was lost: it is reported as ``Answer(0, error=...)`` and the next one
    goes over a new connection.

    Args:
        host / port: The server (loopback).
        payloads: Complete requests; their order is the order they are started in.
        concurrency: Connections, hence requests in flight (at least 1).
        on_answer: Called with ``(index into payloads, answer)`` as each one completes.
        request_timeout: Seconds one request may take, connecting included.

    Raises:
        ValueError: ``concurrency`` is below 1.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    # One shared iterator: a worker whose answers come back faster takes more requests.
    pending: Iterator[tuple[int, bytes]] = iter(enumerate(payloads))

    async def worker() -> None:
        connection: _Connection | None = None
        for index, payload in pending:
            try:
                async with asyncio.timeout(request_timeout):
                    if connection is None or connection.closed or connection.reader.at_eof():
                        # None yet, or the server closed it after its last answer; nothing
                        # of this request has been sent, so a new connection is safe.
                        connection = _Connection(*await asyncio.open_connection(host, port))
                    answer = await connection.exchange(payload)
            except _FAILURES as exc:
                if connection is not None:
                    connection.close()
                connection = None
                answer = Answer(0, error=f"{type(exc).__name__}: {exc}")
            on_answer(index, answer)
        if connection is not None:
            connection.close()

    workers = min(concurrency, len(payloads))
    await asyncio.gather(*(worker() for _ in itertools.repeat(None, workers)))
