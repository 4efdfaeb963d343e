"""Probes (no authentication): liveness and readiness."""

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from producer.api.deps import PublisherDep

router = APIRouter(tags=["health"])


class ReadinessReport(BaseModel):
    """The answer of ``/readyz``, 200 or 503 alike."""

    status: Literal["ready", "unready"]
    checks: dict[str, dict[str, Any]] = Field(
        description="Each check (database, servicebus, queues, outbox, lifecycle): "
        '``{"ok": bool, ...details}``'
    )


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=ReadinessReport,
    responses={
        503: {
            "description": "Not ready; the body says which check failed",
            "model": ReadinessReport,
        }
    },
)
async def readyz(publisher: PublisherDep) -> JSONResponse:
    """200 when the outbox database answers, Service Bus sends are not failing (unless
    ``PRODUCER_READINESS_REQUIRES_SERVICEBUS=false``), the outbox backlog is at most
    ``PRODUCER_READINESS_MAX_BACKLOG`` and the process is not shutting down; 503
    otherwise. The body reports every check, including the backlog, either way."""
    readiness = await publisher.readiness()
    body: dict[str, Any] = {
        "status": "ready" if readiness.ready else "unready",
        "checks": {name: {"ok": c.ok, **c.details} for name, c in readiness.checks.items()},
    }
    return JSONResponse(jsonable_encoder(body), status_code=200 if readiness.ready else 503)
