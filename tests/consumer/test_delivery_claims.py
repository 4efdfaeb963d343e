"""Delivery claims: how long a killed or cancelled attempt holds an event back
(issue 21, item 6)."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from consumer.errors import TransientError
from consumer.handlers.delivery import NotificationHandler
from consumer.runner import open_stores
from consumer.settings import ConsumerSettings
from consumer.stores.database import Database, as_utc
from consumer.stores.deliveries import Claim, DeliveryStore
from consumer.stores.schema import deliveries
from contracts import NotificationEnvelope
from tests.consumer.conftest import notification_envelope

CONNECTION = (
    "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
)


class Hanging:
    """A sender whose attempt never ends (a stalled SMTP server, a silent webhook)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(self, envelope: NotificationEnvelope) -> None:
        self.started.set()
        await asyncio.Event().wait()


async def sent(envelope: NotificationEnvelope) -> None:
    """A sender that succeeds."""


async def test_shipped_settings_hold_a_dead_consumers_claim_40_s_not_300(
    tmp_path: Path,
) -> None:
    settings = ConsumerSettings(
        servicebus_connection_string=CONNECTION,
        audit_store_url=f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}",
    )
    envelope = notification_envelope("email", "ada@example.com")
    async with open_stores(settings) as stores:
        before = datetime.now(UTC)
        assert await stores.deliveries.claim(envelope) is Claim.CLAIMED
        # The process is killed here. Another consumer gets the redelivered message:
        other = DeliveryStore(stores.databases[0], lease=settings.delivery_claim_lease)
        assert await other.claim(envelope) is Claim.IN_PROGRESS
        async with stores.databases[0].engine.connect() as connection:
            stored = await connection.scalar(
                select(deliveries.c.claimed_until).where(deliveries.c.event_id == envelope.id)
            )
    assert stored is not None
    claimed_until = as_utc(stored)
    # The smtp/webhook timeouts (10 s) bound an attempt, plus 30 s to record its outcome.
    assert settings.delivery_claim_lease == timedelta(seconds=40)
    assert claimed_until - before <= timedelta(seconds=41)


async def test_an_attempt_past_its_timeout_fails_and_releases_the_claim(db: Database) -> None:
    store = DeliveryStore(db)
    hanging = Hanging()
    handler = NotificationHandler("webhook", hanging, store, attempt_timeout=0.3)
    envelope = notification_envelope()

    with pytest.raises(TransientError, match=r"took over 0\.3 s"):
        await asyncio.wait_for(handler(envelope), 20)

    record = await store.get(envelope.id)
    assert record is not None
    assert record.status == "failed"
    assert await DeliveryStore(db).claim(envelope) is Claim.CLAIMED  # no lease to wait out


async def test_the_same_process_takes_over_its_own_cancelled_attempt_at_once(
    db: Database,
) -> None:
    store = DeliveryStore(db)
    hanging = Hanging()
    envelope = notification_envelope()
    attempt = asyncio.create_task(NotificationHandler("webhook", hanging, store)(envelope))
    await asyncio.wait_for(hanging.started.wait(), 20)
    attempt.cancel()  # the processing deadline, or shutdown past the grace period
    with pytest.raises(asyncio.CancelledError):
        await attempt

    # Another process must still wait: the cancelled attempt may have sent it.
    with pytest.raises(TransientError, match="in progress"):
        await NotificationHandler("webhook", sent, DeliveryStore(db))(envelope)
    # The owner knows its attempt is over and delivers on the next try.
    assert await NotificationHandler("webhook", sent, store)(envelope) is True
    record = await store.get(envelope.id)
    assert record is not None
    assert record.status == "delivered"
    assert record.attempts == 2


async def test_a_live_attempt_of_the_same_process_still_blocks_a_second_copy(
    db: Database,
) -> None:
    store = DeliveryStore(db)
    hanging = Hanging()
    envelope = notification_envelope()
    attempt = asyncio.create_task(NotificationHandler("webhook", hanging, store)(envelope))
    await asyncio.wait_for(hanging.started.wait(), 20)
    try:
        # A second copy (lock lost and redelivered) while the first is still sending.
        with pytest.raises(TransientError, match="in progress"):
            await NotificationHandler("webhook", sent, store)(envelope)
    finally:
        attempt.cancel()
