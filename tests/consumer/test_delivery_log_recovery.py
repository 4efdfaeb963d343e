"""After a crash at any point of a delivery, the delivery log holds exactly the delivered
events, each once (issue 21, item 4). Each test leaves the store and the file as a kill
at one point would, then starts the consumer's stores again (start-up catch-up)."""

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from consumer.handlers.delivery import NotificationHandler
from consumer.runner import Stores, open_stores
from consumer.settings import ConsumerSettings
from consumer.stores.deliveries import DeliveryStore
from consumer.stores.schema import deliveries
from contracts import NotificationEnvelope
from tests.consumer.conftest import notification_envelope


async def quiet(envelope: NotificationEnvelope) -> None:
    """A sender that succeeds (the transport does not matter here)."""


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> ConsumerSettings:
    return ConsumerSettings(
        servicebus_connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;"
        "SharedAccessKey=v;UseDevelopmentEmulator=true",
        audit_store_url=store_url,
        delivery_log_path=tmp_path / "notifications.jsonl",
    )


def log_path(settings: ConsumerSettings) -> Path:
    assert settings.delivery_log_path is not None
    return settings.delivery_log_path


def lines(settings: ConsumerSettings) -> list[dict[str, object]]:
    text = log_path(settings).read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


async def delivered_ids(stores: Stores) -> set[str]:
    async with stores.databases[-1].engine.connect() as connection:
        rows = await connection.execute(
            select(deliveries.c.event_id).where(deliveries.c.status == "delivered")
        )
        return {row.event_id for row in rows}


async def deliver(stores: Stores, *envelopes: NotificationEnvelope) -> None:
    """Deliver through the handler, delivery log included (no crash)."""
    handler = NotificationHandler("email", quiet, stores.deliveries, stores.delivery_log)
    for envelope in envelopes:
        assert await handler(envelope)


async def mark_delivered_only(store: DeliveryStore, envelope: NotificationEnvelope) -> None:
    """The state a kill right after committing "delivered" leaves: no line, not logged."""
    await store.claim(envelope)
    await store.mark_delivered(envelope.id)


def email(**fields: object) -> NotificationEnvelope:
    return notification_envelope("email", "ada@example.com", **fields)


async def test_killed_after_the_delivered_commit_the_line_is_written_at_start_up(
    settings: ConsumerSettings,
) -> None:
    before, lost = email(subject="Before"), email(template="weekly-digest", priority="high")
    async with open_stores(settings) as stores:
        await deliver(stores, before)
        await mark_delivered_only(stores.deliveries, lost)
    assert [line["event_id"] for line in lines(settings)] == [before.id]

    async with open_stores(settings) as stores:
        delivered = await delivered_ids(stores)

    written = lines(settings)
    assert Counter(line["event_id"] for line in written) == Counter({before.id: 1, lost.id: 1})
    assert delivered == {before.id, lost.id}
    [recovered] = [line for line in written if line["event_id"] == lost.id]
    assert recovered["subject"] == "Hello"
    assert recovered["template"] == "weekly-digest"
    assert recovered["priority"] == "high"
    assert recovered["channel"] == "email"
    assert recovered["recipient"] == "ada@example.com"


async def test_killed_after_the_line_before_its_mark_no_line_is_duplicated(
    settings: ConsumerSettings,
) -> None:
    first, second = email(), email()
    async with open_stores(settings) as stores:
        await deliver(stores, first, second)
        # The kill came after the line was written, before the row was marked logged.
        async with stores.databases[-1].write() as connection:
            await connection.execute(
                update(deliveries).where(deliveries.c.event_id == second.id).values(logged_at=None)
            )

    async with open_stores(settings) as stores:
        assert await stores.deliveries.unlogged() == []
        third = email()
        await deliver(stores, third)
    async with open_stores(settings):
        pass

    ids = [line["event_id"] for line in lines(settings)]
    assert ids == [first.id, second.id, third.id]


async def test_a_line_torn_by_the_kill_is_replaced_by_a_whole_one(
    settings: ConsumerSettings,
) -> None:
    kept, torn = email(), email()
    async with open_stores(settings) as stores:
        await deliver(stores, kept)
        await mark_delivered_only(stores.deliveries, torn)
    with log_path(settings).open("a", encoding="utf-8") as log:
        log.write('{"event_id": "' + torn.id[:8])  # the kill cut the write short

    async with open_stores(settings) as stores:
        await deliver(stores, after := email())

    assert [line["event_id"] for line in lines(settings)] == [kept.id, torn.id, after.id]
