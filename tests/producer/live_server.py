"""The producer app served by a real uvicorn server on loopback, in a background thread."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn

from producer import ProducerSettings, create_app
from producer.server import server_limits


@contextmanager
def serve(
    settings: ProducerSettings,
    *,
    http: Literal["auto", "h11", "httptools"] = "auto",
    timeout: float = 60.0,
) -> Iterator[str]:
    """Serve ``create_app(settings)`` with uvicorn on an ephemeral port; yields its base URL.

    Uses the same uvicorn limits as ``python -m producer`` (``producer.server``).

    Raises:
        RuntimeError: the server did not start within ``timeout`` seconds.
    """
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=0,
        http=http,
        log_level="warning",
        access_log=False,
        **server_limits(settings),
    )
    server = uvicorn.Server(config)
    # Not in the main thread, so uvicorn installs no signal handlers.
    thread = threading.Thread(target=server.run, name="uvicorn-producer", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the producer's uvicorn server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
