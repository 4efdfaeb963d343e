"""Request size limits: the body (413 Content Too Large, RFC 9110 section 15.5.14) and the
header section (431 Request Header Fields Too Large, RFC 6585 section 5).

Pure ASGI middlewares. A declared ``Content-Length`` above the body limit is refused before
the body is read; a chunked body is counted as it arrives and refused as soon as it passes
the limit (the route never sees it). The header limits are checked here, in the
application, because that holds whichever HTTP implementation serves it: uvicorn's
httptools protocol has no header limit at all and h11's only bounds its buffer (and answers
a plain 400). ``producer.server`` also bounds the buffering at the protocol level.
"""

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ContentTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit (answered as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodySizeLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes``.

    Args:
        app: The wrapped application.
        max_bytes: Largest accepted body in bytes.
        on_too_large: ASGI app that answers a refused request (default: a plain 413);
            the producer passes one that writes problem details.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, on_too_large: ASGIApp | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_too_large = on_too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                # The server reads exactly Content-Length bytes as the body (HTTP/1.1
                # framing), so only a chunked body needs counting: no wrappers around
                # receive and send on the common path, where they cost every accept
                # request CPU for nothing (docs/benchmarks/findings.md §14.6).
                await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ContentTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except ContentTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_too_large is not None:
            await self.on_too_large(scope, receive, send)
            return
        body = b"Content Too Large"
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class HeaderLimitMiddleware:
    """Refuse requests whose header section is too large or has too many fields.

    Args:
        app: The wrapped application.
        max_bytes: Largest header section in bytes, counted as on the wire: each field's
            name and value plus 4 (``": "`` and CRLF).
        max_count: Most header fields.
        on_too_large: ASGI app that answers a refused request; it finds the reason in
            ``scope["state"]["header_limit"]`` (one readable sentence).
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, max_count: int, on_too_large: ASGIApp
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.on_too_large = on_too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reason = header_limit_exceeded(scope["headers"], self.max_bytes, self.max_count)
            if reason is not None:
                scope.setdefault("state", {})["header_limit"] = reason
                await self.on_too_large(scope, receive, send)
                return
        await self.app(scope, receive, send)


def header_limit_exceeded(
    headers: Sequence[tuple[bytes, bytes]], max_bytes: int, max_count: int
) -> str | None:
    """Why ``headers`` break the limits (one sentence), or ``None`` when they do not."""
    if len(headers) > max_count:
        return f"the request has {len(headers)} header fields; at most {max_count} are accepted"
    size = sum(len(name) + len(value) + 4 for name, value in headers)
    if size > max_bytes:
        return f"the request's header fields are {size} bytes; at most {max_bytes} are accepted"
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
