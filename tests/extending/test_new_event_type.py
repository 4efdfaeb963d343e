"""A third event type, added exactly as ``docs/extending.md`` tells a contributor, travels
end to end: HTTP -> producer -> outbox -> emulator queue -> consumer -> its handler.

The steps, in the guide's order: (1) the contract: a data model, its envelope and one
``contracts.registry.register``; (2) a handler; (3) one
``consumer.handlers.registry.register``. Nothing else changes: the producer's routes and
the consumer's queue membership come from the registrations. The test registers the type
itself (and removes it afterwards) rather than shipping it in ``contracts``.
"""

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Final, Literal

import httpx
import pytest
from pydantic import Field, StringConstraints

from consumer.handlers import registry as handlers
from consumer.handlers.registry import HandlerDependencies
from consumer.runner import run_consumer
from consumer.runtime.routing import Route
from consumer.settings import ConsumerSettings
from contracts import ContractModel, Envelope, EventSpec
from contracts import registry as contracts
from contracts.registry import AUDIT_QUEUE
from producer import ProducerSettings, create_app
from producer.apikeys import new_api_key

# --- Step 1: the contract -------------------------------------------------------------

INVOICE_PAID_EVENT_TYPE: Final = "io.servicebus-events.example.invoice.paid"


class InvoicePaid(ContractModel):
    """An invoice was paid in full."""

    invoice_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """The invoice's id, e.g. ``INV-1042``."""
    amount_cents: int = Field(ge=0)
    """Amount paid, in cents."""


class InvoicePaidEnvelope(Envelope):
    """An :class:`InvoicePaid` (version 1) in its envelope."""

    type: Literal["io.servicebus-events.example.invoice.paid"] = INVOICE_PAID_EVENT_TYPE
    schemaversion: Literal["1"] = "1"
    data: InvoicePaid


INVOICE_PAID = EventSpec(
    INVOICE_PAID_EVENT_TYPE,
    "1",
    InvoicePaidEnvelope,
    AUDIT_QUEUE,
    "Invoice paid",
    http_path="/invoices-paid",
)

# --- Step 2: the handler --------------------------------------------------------------


class InvoicePaidHandler:
    """Records each paid invoice once (a redelivered event id is skipped)."""

    def __init__(self, paid: dict[str, int]) -> None:
        self._paid = paid

    async def __call__(self, envelope: Envelope) -> bool:
        """Returns ``False`` for an event id already recorded."""
        assert isinstance(envelope, InvoicePaidEnvelope)
        if envelope.id in self._paid:
            return False
        self._paid[envelope.id] = envelope.data.amount_cents
        return True


# --- Step 3: one registration ---------------------------------------------------------


@pytest.fixture
def paid() -> Iterator[dict[str, int]]:
    """Registers the type (steps 1 and 3) for one test; yields what its handler recorded."""
    recorded: dict[str, int] = {}

    def invoice_paid_route(dependencies: HandlerDependencies) -> Route:
        return Route(
            "invoice-paid", InvoicePaidHandler(recorded), dependencies.settings.audit_retry
        )

    contracts.register(INVOICE_PAID)
    handlers.register(INVOICE_PAID_EVENT_TYPE, invoice_paid_route)
    try:
        yield recorded
    finally:
        handlers.unregister(INVOICE_PAID_EVENT_TYPE)
        contracts.unregister(INVOICE_PAID)


# --- The path end to end --------------------------------------------------------------


async def test_a_registered_event_type_travels_from_http_to_its_handler(
    paid: dict[str, int], connection_string: str, tmp_path: Path
) -> None:
    key, entry = new_api_key("extending")
    headers = {"X-API-Key": key}
    app = create_app(
        ProducerSettings(
            servicebus_connection_string=connection_string,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
            api_keys=str(entry),
        )
    )
    consumer_settings = ConsumerSettings(
        servicebus_connection_string=connection_string,
        audit_store_url=f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}",
        delivery_log_path="",
        health_port=0,
        max_wait_time=0.5,
        audit_max_delivery_count=3,
        notifications_max_delivery_count=3,
    )
    stop = asyncio.Event()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://producer"
        ) as client,
    ):
        # After the producer's lifespan: both migrate, and Alembic's context is global.
        consumer = asyncio.create_task(run_consumer(consumer_settings, stop))
        try:
            one = await client.post(
                "/v1/invoices-paid",
                json={"invoice_id": "INV-1042", "amount_cents": 129900},
                headers=headers,
            )
            batch = await client.post(
                "/v1/invoices-paid:batch",
                json={"events": [{"invoice_id": f"INV-{n}", "amount_cents": n} for n in (1, 2)]},
                headers=headers,
            )
            invalid = await client.post(
                "/v1/invoices-paid", json={"invoice_id": "INV-1"}, headers=headers
            )
            document = (await client.get("/openapi.json")).json()

            assert one.status_code == 202, one.text
            assert one.json()["type"] == INVOICE_PAID_EVENT_TYPE
            assert one.json()["queue"] == AUDIT_QUEUE
            assert batch.status_code == 202, batch.text
            assert invalid.status_code == 422
            assert {"/v1/invoices-paid", "/v1/invoices-paid:batch"} <= set(document["paths"])
            expected = {one.json()["id"]: 129900}
            expected.update(
                {e["id"]: n for e, n in zip(batch.json()["events"], (1, 2), strict=True)}
            )
            deadline = asyncio.get_running_loop().time() + 30
            while paid != expected:
                assert asyncio.get_running_loop().time() < deadline, f"handled only {paid}"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            stats = await asyncio.wait_for(consumer, 40)

    assert paid == expected
    assert not stats.queue(AUDIT_QUEUE).dead_lettered
