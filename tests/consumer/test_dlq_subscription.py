"""``consumer dlq`` on a topic subscription: list, show, replay through the topic for that
subscription only, purge; API and CLI."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from consumer import dlq
from consumer.runtime.routing import Route
from consumer.runtime.worker import Worker
from contracts import AUDIT_EVENT_TYPE, EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.testing import (
    combine_configs,
    run_emulator,
    sql_rule,
    subscription_config,
    topic_config,
)
from tests.consumer.conftest import FAST, audit_envelope, eventually, queue_config
from tests.consumer.test_dlq import cli

TOPIC = "events"
SIEM = f"{TOPIC}/Subscriptions/siem"


@pytest.fixture
def topic_connection_string() -> Iterator[str]:
    """``siem`` (the one whose dead letters are replayed); ``guarded``, whose rule keeps
    other subscriptions' replays out; ``all``, which takes everything."""
    config = combine_configs(
        topic_config(
            TOPIC,
            "siem",
            subscription_config(
                "guarded",
                sql_rule("not-replays", "replayTarget IS NULL OR replayTarget = 'guarded'"),
            ),
            "all",
        )
    )
    with run_emulator(config) as emulator:
        yield emulator.connection_string


@pytest.fixture
async def client(topic_connection_string: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(topic_connection_string) as sb:
        yield sb


async def receive_all(
    client: ServiceBusClient, subscription: str
) -> list[ServiceBusReceivedMessage]:
    """Receive and complete what the subscription holds now."""
    received: list[ServiceBusReceivedMessage] = []
    async with client.get_subscription_receiver(TOPIC, subscription) as receiver:
        while batch := await receiver.receive_messages(max_message_count=20, max_wait_time=1):
            for message in batch:
                await receiver.complete_message(message)
            received.extend(batch)
    return received


async def dead_letter_on_siem(client: ServiceBusClient, reasons: list[str]) -> list[str]:
    envelopes = [audit_envelope() for _ in reasons]
    async with client.get_topic_sender(TOPIC) as sender:
        await sender.send_messages([to_servicebus_message(e) for e in envelopes])
    by_id = dict(zip((e.id for e in envelopes), reasons, strict=True))
    async with client.get_subscription_receiver(TOPIC, "siem") as receiver:
        left = set(by_id)
        while left:
            for message in await receiver.receive_messages(max_message_count=10, max_wait_time=5):
                reason = by_id[str(message.message_id)]
                await receiver.dead_letter_message(message, reason=reason, error_description="x")
                left.discard(str(message.message_id))
    for other in ("guarded", "all"):
        assert len(await receive_all(client, other)) == len(reasons)  # the originals
    return [e.id for e in envelopes]


async def test_list_show_replay_purge_on_a_subscription(client: ServiceBusClient) -> None:
    ids = await dead_letter_on_siem(client, ["Broken", "Other"])

    listed = await dlq.list_dead_letters(client, SIEM)
    assert sorted(item.message_id or "" for item in listed) == sorted(ids)
    broken = next(item for item in listed if item.reason == "Broken")
    shown = await dlq.show(client, SIEM, broken.sequence_number)
    assert shown.message_id == broken.message_id

    done = await dlq.replay(client, SIEM, dlq.Selection(reason="Broken"), max_wait_time=2)
    assert list(done.replayed) == [broken.sequence_number]

    [back] = await receive_all(client, "siem")
    properties = {
        str(k, "utf-8") if isinstance(k, bytes) else k: v
        for k, v in (back.application_properties or {}).items()
    }
    assert properties["replayTarget"] in ("siem", b"siem")
    assert str(back.message_id).startswith(f"{broken.message_id}:replay:")
    assert await receive_all(client, "guarded") == []  # its rule keeps the copy out

    # A worker on a subscription without such a rule completes the copy unprocessed.
    handled: list[str] = []

    async def handler(envelope: EventEnvelope) -> None:
        handled.append(envelope.id)

    config = queue_config(f"{TOPIC}/Subscriptions/all", event_types=frozenset({AUDIT_EVENT_TYPE}))
    route = Route("audit", handler, FAST)
    worker = Worker(client, [config], lambda envelope: route, shutdown_grace_period=10)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    stats = worker.stats.queue(config.name)
    try:
        await eventually(lambda: _true(stats.completed == 1))
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    assert handled == []
    assert stats.duplicates == 1

    purged = await dlq.purge(client, SIEM, dlq.Selection(everything=True), max_wait_time=2)
    assert purged.purged == 1
    assert await dlq.list_dead_letters(client, SIEM) == []


async def test_cli_on_a_subscription(
    client: ServiceBusClient, topic_connection_string: str
) -> None:
    await dead_letter_on_siem(client, ["Broken"])
    conn = ("--connection-string", topic_connection_string)

    listed = await asyncio.to_thread(cli, "dlq", "list", "--subscription", SIEM, "--json", *conn)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["reason"] == "Broken"

    dry = await asyncio.to_thread(
        cli, "dlq", "replay", "--subscription", SIEM, "--all", "--dry-run", *conn
    )
    assert dry.returncode == 0, dry.stderr
    assert "topic events (replayTarget=siem)" in dry.stdout

    replayed = await asyncio.to_thread(
        cli, "dlq", "replay", "--subscription", SIEM, "--all", "--json", *conn
    )
    assert replayed.returncode == 0, replayed.stderr
    assert len(json.loads(replayed.stdout)["replayed"]) == 1

    for args, message in [
        (("dlq", "list"), "--queue or --subscription"),
        (("dlq", "list", "--queue", "q", "--subscription", SIEM), "--queue or --subscription"),
        (("dlq", "list", "--subscription", "events/siem"), "Subscriptions"),
        (("dlq", "list", "--subscription", f"{TOPIC}/Subscriptions/nope"), "does not exist"),
    ]:
        result = await asyncio.to_thread(cli, *args, *conn)
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


async def _true(value: bool) -> bool:
    return value
