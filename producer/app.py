"""The FastAPI application and its lifespan (one outbox publisher per process)."""

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from starlette.types import Receive, Scope, Send

from common.runtime import freeze_startup_objects
from producer.api import include_routes
from producer.auth import Authenticator
from producer.bootstrap import open_event_publisher
from producer.limits import BodySizeLimitMiddleware, HeaderLimitMiddleware
from producer.openapi import install_openapi
from producer.problems import install_problem_handlers, problem_response
from producer.settings import ProducerSettings
from producer.shutdown import ShutdownDeadline

_PROBES = frozenset({"/healthz", "/readyz"})


def _is_probe(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in _PROBES


DESCRIPTION = """\
Accepts audit events and notifications and publishes them to Azure Service Bus.

An event is committed to a transactional outbox before `202 Accepted` is sent and is
published in the background; the relay publishes whatever is still pending after a crash or
an outage. Every `/v1` route requires `X-API-Key` or a Microsoft Entra ID bearer token.
Errors are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(
    settings: ProducerSettings | None = None,
    *,
    freeze_after_startup: bool = False,
    shutdown: ShutdownDeadline | None = None,
) -> FastAPI:
    """Build the producer app.

    Args:
        settings: Defaults to ``ProducerSettings()`` read from the environment.
        freeze_after_startup: Once the lifespan has started, exempt everything allocated so
            far from full garbage collections (:func:`common.runtime.freeze_startup_objects`);
            for the serving process, not for tests that build many apps.
        shutdown: The process's shutdown deadline, started by the server at SIGTERM
            (:class:`producer.server.DeadlineServer`); by default the lifespan's exit
            starts one of ``settings.shutdown_grace``.

    The lifespan migrates the outbox (unless disabled), opens the Service Bus client,
    starts the relay and the pruner, and on shutdown finishes in-flight publishes, releases
    leases and closes the client by the deadline, leaving the rest in the outbox.
    """
    resolved = settings if settings is not None else ProducerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_event_publisher(resolved, shutdown=shutdown) as publisher:
            app.state.event_publisher = publisher
            if freeze_after_startup:
                freeze_startup_objects()
            yield

    # /docs and /redoc load Swagger UI and ReDoc from this package (fastapi-offline ships
    # them), not from a CDN: they work offline and send nothing to third parties.
    app = FastAPIOffline(
        title="Service Bus event producer",
        version="1",
        summary="Accepts audit and notification events and publishes them to Service Bus.",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry support: the server span is named after the route
        # the router selected, so nothing matches routes a second time (the contrib
        # instrumentation did: docs/benchmarks/findings.md §14.5), and with no provider
        # installed (exporter "none") the whole layer is skipped. Operation spans
        # (dependencies, endpoint, serialization) are off: the create span already shows
        # the outbox work.
        telemetry={"exclude": _is_probe, "operation_spans": False},
        # Swagger UI would otherwise send the document to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = resolved
    app.state.authenticator = Authenticator(resolved)
    install_problem_handlers(app)

    async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            Request(scope, receive),
            413,
            f"the request body is larger than {resolved.max_request_bytes} bytes",
            kind="content-too-large",
        )
        await response(scope, receive, send)

    async def headers_too_large(scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            Request(scope, receive),
            431,
            scope["state"]["header_limit"],
            kind="request-header-fields-too-large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=resolved.max_request_bytes, on_too_large=too_large
    )
    # Added last, so outermost: the headers are judged before anything reads the body.
    app.add_middleware(
        HeaderLimitMiddleware,
        max_bytes=resolved.max_header_bytes,
        max_count=resolved.max_header_count,
        on_too_large=headers_too_large,
    )
    include_routes(app)
    install_openapi(app)
    return app
