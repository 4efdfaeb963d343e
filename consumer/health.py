"""HTTP probes for Azure Container Apps (aiohttp), see
https://learn.microsoft.com/azure/container-apps/health-probes

* ``GET /healthz`` -- liveness: 200 while the worker runs (the event loop answers).
* ``GET /readyz`` -- readiness: 200 when every receiver is attached and every store
  answers ``SELECT 1``; 503 otherwise and from the moment shutdown starts, with
  ``{"status": "unready", "problems": [...]}`` (one line each; a queue that does not
  exist is named with its setting and how to create it).
* ``GET /status`` -- JSON: ``{"ready", "stopping", "uptime_seconds", "queues": {queue:
  counters}}`` (see :class:`consumer.runtime.stats.QueueStats`).
"""

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from consumer.runtime.worker import Worker

logger = logging.getLogger(__name__)

Check = Callable[[], Awaitable[bool]]


class HealthServer:
    """Serves the probes for ``worker``.

    Args:
        worker: The worker whose state is reported.
        checks: Named readiness checks (e.g. store pings), each returning True if OK.
        host: Bind address.
        port: Bind port (0 = an ephemeral port; see :attr:`port` after :meth:`start`).
    """

    def __init__(
        self, worker: Worker, checks: Sequence[tuple[str, Check]], host: str, port: int
    ) -> None:
        self._worker = worker
        self._checks = list(checks)
        self._host = host
        self.port = port
        self._started = time.monotonic()
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            OSError: the address is in use or cannot be bound.
        """
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # the real port when 0 was asked
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        logger.info("health endpoint on http://%s:%d", self._host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _problems(self) -> list[str]:
        problems = []
        if self._worker.stopping or not self._worker.running:
            problems.append("not running" if not self._worker.stopping else "shutting down")
        for processor in self._worker.processors:
            if processor.missing:
                problems.append(processor.missing)
            elif not processor.connected:
                problems.append(f"receiver for {processor.config.name} not connected")
        for name, check in self._checks:
            if not await check():
                problems.append(f"{name} unreachable")
        return problems

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = await self._problems()
        if problems:
            return web.json_response({"status": "unready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def _status(self, _request: web.Request) -> web.Response:
        problems = await self._problems()
        return web.json_response(
            {
                "ready": not problems,
                "problems": problems,
                "stopping": self._worker.stopping,
                "uptime_seconds": round(time.monotonic() - self._started, 1),
                "queues": self._worker.stats.to_json(),
            }
        )
