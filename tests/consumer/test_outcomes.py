"""Consumer outcomes per minute in the consumer's database (``consumer_outcomes``), which
the console charts where it cannot reach the consumers' ``/status`` (Azure: no ingress,
several replicas). Real consumers (``run_consumer``) on the emulator, real SQLite and
PostgreSQL."""

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from sqlalchemy import text

from consumer.retry import RetryPolicy
from consumer.runner import run_consumer
from consumer.runtime.stats import WorkerStats
from consumer.settings import ConsumerSettings
from consumer.stores.database import Database
from consumer.stores.outcomes import OutcomeKey, OutcomeStore
from contracts.servicebus import to_servicebus_message
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.consumer.conftest import (
    WebhookReceiver,
    audit_envelope,
    eventually,
    notification_envelope,
    send,
)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COMPLETED = (AUDIT_QUEUE, "completed", "")
POISONED = (AUDIT_QUEUE, "dead_lettered", "InvalidJson")


def settings_for(connection_string: str, store_url: str) -> ConsumerSettings:
    return ConsumerSettings(
        servicebus_connection_string=connection_string,
        audit_store_url=store_url,
        delivery_log_path="",
        delivery_mode="live",
        webhook={"secret": "test-secret", "allow_http": True, "allow_private_networks": True},
        health_port=0,
        max_wait_time=0.5,
        audit_max_delivery_count=3,
        notifications_max_delivery_count=3,
        outcome_flush_interval=0.2,
    )


class Consumer:
    """One ``run_consumer`` task, as one replica."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run_consumer(settings, self.stop))

    async def shutdown(self) -> WorkerStats:
        self.stop.set()
        return await asyncio.wait_for(self.task, 40)


@pytest.fixture
async def consumers() -> AsyncIterator[list[Consumer]]:
    started: list[Consumer] = []
    yield started
    for consumer in started:
        if not consumer.task.done():
            await consumer.shutdown()


@pytest.fixture
async def outcomes(database: Database) -> OutcomeStore:
    """The table, on a store the test migrated first (so that consumers started together
    in one process never run Alembic, whose context is process-global, at once)."""
    return OutcomeStore(database)


async def recorded(store: OutcomeStore) -> Counter[OutcomeKey]:
    """Every row summed per (queue, outcome, reason)."""
    totals: Counter[OutcomeKey] = Counter()
    for row in await store.since(EPOCH):
        totals[(row.queue, row.outcome, row.reason)] += row.count
    return totals


async def until_recorded(store: OutcomeStore, expected: dict[OutcomeKey, int]) -> None:
    async def done() -> bool:
        return await recorded(store) == Counter(expected)

    await eventually(done)


def stats_totals(*stats: WorkerStats) -> Counter[OutcomeKey]:
    totals: Counter[OutcomeKey] = Counter()
    for worker in stats:
        for queue, counters in worker.queues.items():
            # The original of a delayed retry is completed too; the table counts it once.
            totals[(queue, "completed", "")] += counters.completed - counters.retries_scheduled
            totals[(queue, "retried", "")] += (
                counters.retries_scheduled + counters.immediate_retries
            )
            for reason, count in counters.dead_lettered.items():
                totals[(queue, "dead_lettered", reason)] += count
    return +totals  # zeros dropped, as the table has no zero rows


def poison() -> ServiceBusMessage:
    return ServiceBusMessage("not json", content_type="application/json")


async def test_completions_dead_letters_and_retries_are_counted_per_minute(
    sb: ServiceBusClient,
    connection_string: str,
    store_url: str,
    outcomes: OutcomeStore,
    consumers: list[Consumer],
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.status_by_path["/flaky"] = [503, 200]
    consumers.append(Consumer(settings_for(connection_string, store_url)))
    before = datetime.now(UTC)
    await send(
        sb,
        AUDIT_QUEUE,
        *(to_servicebus_message(audit_envelope(actor=f"u-{n}")) for n in range(2)),
        poison(),
    )
    flaky = notification_envelope("webhook", f"{webhook_receiver.base_url}/flaky")
    await send(sb, NOTIFICATIONS_QUEUE, to_servicebus_message(flaky))
    expected = {
        COMPLETED: 2,
        POISONED: 1,
        (NOTIFICATIONS_QUEUE, "completed", ""): 1,
        (NOTIFICATIONS_QUEUE, "retried", ""): 1,  # 503, then the immediate retry got 200
    }

    await until_recorded(outcomes, expected)
    stats = await consumers[0].shutdown()

    assert await recorded(outcomes) == Counter(expected)  # the last flush added nothing
    assert stats_totals(stats) == Counter(expected)
    rows = await outcomes.since(EPOCH)
    after = datetime.now(UTC)
    assert all(row.minute.second == row.minute.microsecond == 0 for row in rows)
    assert all(before.replace(second=0, microsecond=0) <= row.minute <= after for row in rows)


async def test_a_delayed_retry_counts_once_as_a_retry_and_its_success_once_as_completed(
    sb: ServiceBusClient,
    connection_string: str,
    store_url: str,
    outcomes: OutcomeStore,
    consumers: list[Consumer],
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.status_by_path["/later"] = [503, 200]
    delayed = RetryPolicy(
        immediate_attempts=0,
        delayed_attempts=1,
        delayed_initial_delay=timedelta(seconds=0.5),
        delayed_jitter=timedelta(0),
    )
    settings = settings_for(connection_string, store_url)
    consumers.append(Consumer(settings.model_copy(update={"webhook_retry": delayed})))
    later = notification_envelope("webhook", f"{webhook_receiver.base_url}/later")
    await send(sb, NOTIFICATIONS_QUEUE, to_servicebus_message(later))
    expected = {
        (NOTIFICATIONS_QUEUE, "retried", ""): 1,  # 503: re-sent as a scheduled message
        (NOTIFICATIONS_QUEUE, "completed", ""): 1,  # the re-sent copy got 200
    }

    await until_recorded(outcomes, expected)
    stats = await consumers[0].shutdown()

    assert stats.queue(NOTIFICATIONS_QUEUE).completed == 2  # /status counts both settlements
    assert await recorded(outcomes) == Counter(expected)
    assert stats_totals(stats) == Counter(expected)


async def test_two_consumers_on_one_store_add_up(
    sb: ServiceBusClient,
    connection_string: str,
    store_url: str,
    outcomes: OutcomeStore,
    consumers: list[Consumer],
) -> None:
    settings = settings_for(connection_string, store_url)
    first = Consumer(settings)
    consumers.append(first)
    await send(sb, AUDIT_QUEUE, *(to_servicebus_message(audit_envelope()) for _ in range(3)))
    await until_recorded(outcomes, {COMPLETED: 3})
    second = Consumer(settings)  # the first has migrated: Alembic runs one at a time
    consumers.append(second)
    await send(
        sb,
        AUDIT_QUEUE,
        *(to_servicebus_message(audit_envelope()) for _ in range(20)),
        poison(),
    )
    await until_recorded(outcomes, {COMPLETED: 23, POISONED: 1})
    first_stats = await first.shutdown()
    # Only the second is left to process these: both have counted into the same rows.
    await send(sb, AUDIT_QUEUE, *(to_servicebus_message(audit_envelope()) for _ in range(2)))
    await until_recorded(outcomes, {COMPLETED: 25, POISONED: 1})
    second_stats = await second.shutdown()

    assert first_stats.queue(AUDIT_QUEUE).completed >= 3
    assert second_stats.queue(AUDIT_QUEUE).completed >= 2
    assert stats_totals(first_stats, second_stats) == Counter({COMPLETED: 25, POISONED: 1})
    assert await recorded(outcomes) == Counter({COMPLETED: 25, POISONED: 1})


async def test_outcomes_counted_while_the_table_is_unwritable_are_recorded_once_after(
    sb: ServiceBusClient,
    connection_string: str,
    store_url: str,
    outcomes: OutcomeStore,
    database: Database,
    consumers: list[Consumer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer.outcome_recorder")
    consumers.append(Consumer(settings_for(connection_string, store_url)))
    await send(sb, AUDIT_QUEUE, *(to_servicebus_message(audit_envelope()) for _ in range(2)))
    await until_recorded(outcomes, {COMPLETED: 2})

    # The table goes away under the running consumer (as in a botched maintenance).
    await rename(database, "consumer_outcomes", "consumer_outcomes_away")
    await send(
        sb,
        AUDIT_QUEUE,
        *(to_servicebus_message(audit_envelope()) for _ in range(3)),
        poison(),
    )

    async def all_four_held() -> bool:
        return any(failed_flush(record) == 4 for record in caplog.records)

    await eventually(all_four_held)
    await rename(database, "consumer_outcomes_away", "consumer_outcomes")
    await until_recorded(outcomes, {COMPLETED: 5, POISONED: 1})
    stats = await consumers[0].shutdown()

    assert await recorded(outcomes) == Counter({COMPLETED: 5, POISONED: 1})
    assert stats_totals(stats) == Counter({COMPLETED: 5, POISONED: 1})
    failures = [r for r in caplog.records if failed_flush(r) is not None]
    assert all(len(r.getMessage().splitlines()) == 1 for r in failures)  # one line each


def failed_flush(record: logging.LogRecord) -> Any:
    """The count a "recording ... failed" warning held back, else ``None``."""
    if record.name == "consumer.outcome_recorder" and "kept for the next flush" in record.msg:
        return record.args[0] if isinstance(record.args, tuple) else None
    return None


async def rename(database: Database, old: str, new: str) -> None:
    async with database.write() as connection:
        await connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
