"""The producer's uvicorn server: what it buffers, and when its shutdown deadline starts.

The application enforces the header limits itself (``producer.limits``), whichever HTTP
implementation uvicorn picks; these settings stop a server from buffering far more than
that first. uvicorn's h11 protocol bounds its buffer (``h11_max_incomplete_event_size``,
answering 400 past it); httptools, uvicorn's default when installed, has no such bound.

:class:`DeadlineServer` starts the shutdown deadline (:mod:`producer.shutdown`) at the
signal, so that the HTTP drain, the publisher's shutdown and telemetry share it.
"""

from types import FrameType
from typing import Any, Final

import uvicorn

from producer.settings import ProducerSettings
from producer.shutdown import ShutdownDeadline

REQUEST_LINE_BYTES: Final = 8192
"""Room for the request line on top of the header limit (Apache's ``LimitRequestLine``)."""


def server_limits(settings: ProducerSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``.

    h11 counts the request line and the header section together, so its buffer gets the
    header limit plus :data:`REQUEST_LINE_BYTES`: a header section past the producer's
    limit but within that still reaches the application and gets its 431 problem.
    """
    return {"h11_max_incomplete_event_size": settings.max_header_bytes + REQUEST_LINE_BYTES}


class DeadlineServer(uvicorn.Server):
    """uvicorn's server, starting the shutdown deadline when the stop signal arrives.

    uvicorn only notes the signal and begins its graceful shutdown at its next tick (up to
    0.1 s later); the deadline counts from the signal itself.

    Args:
        config: The server's configuration; its ``timeout_graceful_shutdown`` should be
            :meth:`ShutdownDeadline.http_drain_seconds`.
        deadline: Started at the first SIGTERM or SIGINT.
    """

    def __init__(self, config: uvicorn.Config, deadline: ShutdownDeadline) -> None:
        super().__init__(config)
        self.deadline = deadline

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.deadline.start()
        super().handle_exit(sig, frame)
