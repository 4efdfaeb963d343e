"""The console's long-lived resources, opened once in the app's lifespan: the Service Bus
client, the readers of each source, and the flow sampler's background task."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from azure.servicebus.aio import ServiceBusClient

from common.servicebus import open_servicebus_client
from console.sampler import FlowSampler
from console.settings import ConsoleSettings
from console.sources.bus import BusReader
from console.sources.consumer_status import ConsumerStatus
from console.sources.consumer_store import ConsumerStore
from console.sources.outbox import OutboxReader


@dataclass
class Services:
    """What the pages read and act through (``None``: that source is not configured)."""

    settings: ConsoleSettings
    client: ServiceBusClient
    bus: BusReader
    outbox: OutboxReader | None
    store: ConsumerStore | None
    status: ConsumerStatus | None
    sampler: FlowSampler


@asynccontextmanager
async def open_services(settings: ConsoleSettings) -> AsyncIterator[Services]:
    """Open every source, start sampling; close them all on exit."""
    outbox = OutboxReader(settings.outbox_database_url) if settings.outbox_database_url else None
    store = ConsumerStore(settings.audit_store_url) if settings.audit_store_url else None
    status = ConsumerStatus(settings.consumer_status_url) if settings.consumer_status_url else None
    try:
        async with open_servicebus_client(settings, retry_total=1) as client:
            bus = BusReader(client, settings.peek_limit)
            sampler = FlowSampler(
                settings.queues,
                bus,
                outbox,
                store,
                status,
                settings.sample_interval.total_seconds(),
                settings.history,
            )
            task = asyncio.create_task(sampler.run(), name="console-flow-sampler")
            try:
                yield Services(settings, client, bus, outbox, store, status, sampler)
            finally:
                task.cancel()
                # A peek cancelled mid-way may not unwind at once; the client's close
                # below ends its link either way.
                await asyncio.wait({task}, timeout=5)
    finally:
        for source in (outbox, store, status):
            if source is not None:
                await source.close()
