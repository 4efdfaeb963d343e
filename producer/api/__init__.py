"""HTTP API: ``/v1`` (every route requires a credential) and the probes."""

from fastapi import APIRouter, Depends

from producer.api import events, health, ingest
from producer.auth import authenticate

v1_router = APIRouter(prefix="/v1", dependencies=[Depends(authenticate)])
v1_router.include_router(ingest.router)
v1_router.include_router(events.router)
health_router = health.router

__all__ = ["health_router", "v1_router"]
