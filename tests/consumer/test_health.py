"""Health endpoint: liveness, readiness, status counters."""

import asyncio

import httpx
from azure.servicebus.aio import ServiceBusClient

from consumer.handlers.audit import AuditHandler
from consumer.health import HealthServer
from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from contracts.servicebus import to_servicebus_message
from tests.conftest import AUDIT_QUEUE
from tests.consumer.conftest import FAST, audit_envelope, eventually, queue_config, send


async def test_probes_follow_the_worker(sb: ServiceBusClient, db: Database) -> None:
    route = Route("audit", AuditHandler(AuditStore(db)), FAST)
    worker = Worker(sb, [queue_config(AUDIT_QUEUE)], lambda envelope: route)
    health = HealthServer(worker, [("store", db.ping)], "127.0.0.1", 0)
    await health.start()
    base = f"http://127.0.0.1:{health.port}"
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            assert (await http.get("/readyz")).status_code == 503  # not started yet
            task = asyncio.create_task(worker.run(stop))

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready)
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            await send(sb, AUDIT_QUEUE, to_servicebus_message(audit_envelope()))

            async def counted() -> bool:
                status = (await http.get("/status")).json()
                return bool(status["queues"][AUDIT_QUEUE]["completed"] == 1)

            await eventually(counted)
            status = (await http.get("/status")).json()
            assert status["ready"] is True
            assert status["queues"][AUDIT_QUEUE]["received"] == 1
            stop.set()
            await asyncio.wait_for(task, 30)
            unready = await http.get("/readyz")
            assert unready.status_code == 503
            assert unready.json()["status"] == "unready"
    finally:
        stop.set()
        await health.stop()
