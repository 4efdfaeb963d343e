"""HTTP API: ``/v1`` (every route requires a credential) and the probes."""

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from producer.api import events, health, ingest
from producer.auth import authenticate


def include_routes(app: FastAPI) -> None:
    """Add the ``/v1`` routes and the probes to ``app``.

    The ``/v1`` routers are included directly, hottest first, rather than nested in one
    ``/v1`` router: FastAPI matches nested routers level by level on every request, and the
    OpenTelemetry instrumentation matches once more to name the span, so each level is
    matched twice per request (docs/benchmarks/findings.md §14.1).

    Every ``/v1`` route takes the caller (:data:`producer.auth.PrincipalDep`) itself, so
    no router-level ``Depends(authenticate)`` is added: FastAPI walks a cached
    dependency's whole sub-tree again for each place it is declared, and the second walk
    of ``authenticate`` and its two security schemes is pure repetition on the hottest
    path (docs/benchmarks/findings.md §14.2). :func:`require_authentication` checks that
    no route lacks it.

    Raises:
        RuntimeError: a ``/v1`` route does not depend on ``authenticate``.
    """
    for router in (ingest.ingest_router(), events.router):
        require_authentication(router)
        app.include_router(router, prefix="/v1")
    app.include_router(health.router)


def require_authentication(router: APIRouter) -> None:
    """Fail unless every route of ``router`` depends, at any depth, on ``authenticate``.

    Raises:
        RuntimeError: naming the first route that does not.
    """
    for route in router.routes:
        if isinstance(route, APIRoute) and not _depends_on(route.dependant, authenticate):
            raise RuntimeError(f"route {route.path!r} does not authenticate its caller")


def _depends_on(dependant: Dependant, call: object) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)
