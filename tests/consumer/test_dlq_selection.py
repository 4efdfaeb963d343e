"""Replay and purge act on a snapshot: each selected dead letter once, the others untouched,
bounded message ids, and a report of what was done even when something fails."""

import asyncio
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from consumer import dlq
from consumer.errors import PermanentError
from consumer.runtime.routing import Route
from contracts import AUDIT_EVENT_TYPE, EventEnvelope
from contracts.servicebus import to_servicebus_message
from emulator.testing import run_emulator
from tests.conftest import AUDIT_QUEUE, queues_config
from tests.consumer.conftest import FAST, StartWorker, audit_envelope, eventually, send
from tools.processes import ROOT


@pytest.fixture
def held_lock_emulator() -> Iterator[str]:
    """Locks longer than the tests' usual 2 s, so that an unselected dead letter held while
    the selected ones are settled cannot lose its lock on a busy machine (which would count a
    delivery whatever the tool does)."""
    with run_emulator(queues_config(LockDuration="PT30S", MaxMessageSizeInKilobytes=1)) as sb:
        yield sb.connection_string


@pytest.fixture
async def held_sb(held_lock_emulator: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(held_lock_emulator) as client:
        yield client


async def dead_letter_messages(
    sb: ServiceBusClient,
    specs: list[tuple[str, str]],
    *,
    body: bytes = b"{}",
    description: str = "why",
) -> None:
    """Send one message per (message id, reason) and dead-letter it with that reason; the
    DLQ then holds them in this order."""
    await send(
        sb,
        AUDIT_QUEUE,
        *(ServiceBusMessage(body, message_id=message_id) for message_id, _ in specs),
    )
    reasons = dict(specs)
    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        while reasons:
            for message in await receiver.receive_messages(max_message_count=10, max_wait_time=5):
                reason = reasons.pop(str(message.message_id))
                await receiver.dead_letter_message(
                    message, reason=reason, error_description=description
                )


async def delivery_counts(sb: ServiceBusClient) -> dict[str, int | None]:
    return {
        item.message_id or "": item.delivery_count
        for item in await dlq.list_dead_letters(sb, AUDIT_QUEUE)
    }


def cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        cwd=ROOT,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )


def cli_at_terminal(*args: str, answer: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a terminal as stdin, typing ``answer``."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer.encode())
        return cli(*args, stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)


async def test_replay_and_purge_leave_unselected_dead_letters_as_they_were(
    held_sb: ServiceBusClient,
) -> None:
    await dead_letter_messages(
        held_sb, [("a", "Broken"), ("b", "Other"), ("c", "Broken"), ("d", "Other")]
    )
    before = await delivery_counts(held_sb)

    done = await dlq.replay(held_sb, AUDIT_QUEUE, dlq.Selection(reason="Broken"))

    assert sorted(done.replayed.values()) == sorted(
        f"{item.message_id}:replay:{item.sequence_number}" for item in done.matched
    )
    assert [item.message_id for item in done.matched] == ["a", "c"]
    assert not done.failed
    assert not done.missing
    assert await delivery_counts(held_sb) == {"b": before["b"], "d": before["d"]}
    async with held_sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        copies = await receiver.receive_messages(max_message_count=2, max_wait_time=5)
        for copy in copies:
            await receiver.complete_message(copy)
    assert sorted(str(copy.message_id) for copy in copies) == sorted(done.replayed.values())

    await dead_letter_messages(held_sb, [("e", "Stale")])
    purged = await dlq.purge(held_sb, AUDIT_QUEUE, dlq.Selection(reason="Stale"))

    assert purged.purged == 1
    assert await delivery_counts(held_sb) == {"b": before["b"], "d": before["d"]}


async def test_replay_with_the_consumer_running_replays_each_dead_letter_once(
    sb: ServiceBusClient, connection_string: str, start_worker: StartWorker
) -> None:
    async def always_broken(_envelope: EventEnvelope) -> bool:
        raise PermanentError("Broken", "still broken")

    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", always_broken, FAST)})
    envelope = audit_envelope()
    await send(sb, AUDIT_QUEUE, to_servicebus_message(envelope))

    def dead_lettered(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return running.stats().dead_lettered["Broken"] >= count

        return check

    await eventually(dead_lettered(1))
    [first] = await dlq.list_dead_letters(sb, AUDIT_QUEUE)

    result = await asyncio.to_thread(
        cli, "dlq", "replay", "--queue", AUDIT_QUEUE, "--reason", "Broken",
        "--connection-string", connection_string,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "replayed 1 of 1 selected dead letter(s) to audit" in result.stdout
    await eventually(dead_lettered(2))
    [second] = await dlq.list_dead_letters(sb, AUDIT_QUEUE)
    assert second.message_id == f"{envelope.id}:replay:{first.sequence_number}"
    assert second.properties[dlq.REPLAYED_ORIGINAL_ID] == envelope.id

    again = await dlq.replay(sb, AUDIT_QUEUE, dlq.Selection(reason="Broken"))

    assert again.replayed == {
        second.sequence_number: f"{envelope.id}:replay:{second.sequence_number}"
    }
    await eventually(dead_lettered(3))
    [third] = await dlq.list_dead_letters(sb, AUDIT_QUEUE)
    assert third.message_id == f"{envelope.id}:replay:{second.sequence_number}"
    assert third.properties[dlq.REPLAY_COUNT] == 2


async def test_replay_of_a_128_character_message_id_keeps_the_id_within_the_limit(
    sb: ServiceBusClient, connection_string: str
) -> None:
    original = "p" * 128
    await dead_letter_messages(sb, [(original, "Broken")])
    [item] = await dlq.list_dead_letters(sb, AUDIT_QUEUE)

    result = await asyncio.to_thread(
        cli, "dlq", "replay", "--queue", AUDIT_QUEUE, "--all",
        "--connection-string", connection_string,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "replayed 1 of 1" in result.stdout
    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        [copy] = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
        await receiver.complete_message(copy)
    suffix = f":replay:{item.sequence_number}"
    assert str(copy.message_id) == original[: 128 - len(suffix)] + suffix
    properties = {
        (k.decode() if isinstance(k, bytes) else k): v
        for k, v in (copy.application_properties or {}).items()
    }
    assert properties[dlq.REPLAYED_ORIGINAL_ID] in (original, original.encode())


async def test_replay_reports_what_it_did_when_one_dead_letter_cannot_be_sent(
    held_sb: ServiceBusClient, held_lock_emulator: str
) -> None:
    """The queues take 1 KB messages: the large dead letter fits, its copy with the
    provenance properties does not."""
    await dead_letter_messages(held_sb, [("big", "Broken")], body=b"x" * 700, description="d" * 150)
    await dead_letter_messages(held_sb, [("small", "Broken")])
    before = await delivery_counts(held_sb)
    big = (await dlq.list_dead_letters(held_sb, AUDIT_QUEUE))[0]

    result = await asyncio.to_thread(
        cli, "dlq", "replay", "--queue", AUDIT_QUEUE, "--reason", "Broken",
        "--connection-string", held_lock_emulator,
    )  # fmt: skip

    assert result.returncode == 1
    assert "replayed 1 of 2 selected dead letter(s) to audit" in result.stdout
    assert f"{big.sequence_number}: too large for audit" in result.stdout
    assert "Traceback" not in result.stderr
    *progress, line = result.stderr.strip().splitlines()
    assert progress == ["replaying to audit: 2 dead letter(s) selected"]
    assert line.startswith("consumer: error: 1 of 2 selected dead letter(s) not replayed")
    assert "too large" in line
    assert "connection string" not in line
    assert await delivery_counts(held_sb) == {"big": before["big"]}


async def test_purge_shows_the_count_asks_at_a_terminal_and_needs_yes_otherwise(
    sb: ServiceBusClient, connection_string: str
) -> None:
    await dead_letter_messages(sb, [("a", "Old"), ("b", "Keep"), ("c", "Old")])
    before = await delivery_counts(sb)
    conn = ("--connection-string", connection_string)

    piped = await asyncio.to_thread(
        cli, "dlq", "purge", "--queue", AUDIT_QUEUE, "--reason", "Old", *conn
    )
    assert piped.returncode == 1
    assert piped.stderr.strip().splitlines() == [
        "consumer: error: refusing to purge 2 dead letter(s) without confirmation: "
        "stdin is not a terminal; pass --yes"
    ]
    nothing = await asyncio.to_thread(
        cli, "dlq", "purge", "--queue", AUDIT_QUEUE, "--older-than", "7d", *conn
    )
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing purged" in nothing.stdout

    asked = await asyncio.to_thread(
        cli_at_terminal, "dlq", "purge", "--queue", AUDIT_QUEUE, "--reason", "Old", *conn,
        answer="y\n",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert "Delete 2 dead letter(s) of audit/$DeadLetterQueue (reason Old)?" in asked.stdout
    assert "purged 2 of 2 selected dead letter(s)" in asked.stdout
    assert await delivery_counts(sb) == {"b": before["b"]}

    forced = await asyncio.to_thread(
        cli, "dlq", "purge", "--queue", AUDIT_QUEUE, "--all", "--yes", *conn
    )
    assert forced.returncode == 0, forced.stderr
    assert "1 dead letter(s) selected" in forced.stderr  # progress starts with the count
    assert "purged 1 of 1 selected dead letter(s)" in forced.stdout
    assert await delivery_counts(sb) == {}


async def test_replay_stopped_by_an_outage_says_what_it_had_replayed() -> None:
    with run_emulator(queues_config(LockDuration="PT30S")) as emulator:
        async with ServiceBusClient.from_connection_string(
            emulator.connection_string, retry_total=0
        ) as client:
            await dead_letter_messages(client, [(f"m{n}", "Broken") for n in range(10)])
            handled = 0

            def outage_after_three(count: int) -> None:
                nonlocal handled
                handled += count
                if handled == 3:
                    emulator.emulator.stop()

            with pytest.raises(dlq.DlqError) as stopped:
                await dlq.replay(
                    client, AUDIT_QUEUE, dlq.Selection(everything=True), progress=outage_after_three
                )

    assert str(stopped.value).startswith("cannot reach Service Bus")
    assert stopped.value.outcome is not None
    matched = stopped.value.outcome.matched
    assert [item.message_id for item in matched] == [f"m{n}" for n in range(10)]
    assert stopped.value.outcome.replayed == {
        item.sequence_number: f"{item.message_id}:replay:{item.sequence_number}"
        for item in matched[:3]
    }
