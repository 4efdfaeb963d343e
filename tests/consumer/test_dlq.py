"""Dead-letter tooling: list, show, replay (API and CLI), purge, user errors."""

import asyncio
import json
import subprocess
import sys

import pytest
from azure.servicebus.aio import ServiceBusClient

from consumer import dlq
from consumer.errors import PermanentError
from consumer.handlers.audit import AuditHandler
from consumer.runtime.routing import Route
from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from contracts import AUDIT_EVENT_TYPE, EventEnvelope
from contracts.servicebus import to_servicebus_message
from tests.conftest import AUDIT_QUEUE
from tests.consumer.conftest import FAST, StartWorker, audit_envelope, eventually, send
from tools.processes import ROOT


async def dead_letter(sb: ServiceBusClient, reasons: list[str]) -> list[str]:
    """Send one message per reason and dead-letter it with that reason; returns ids."""
    envelopes = [audit_envelope() for _ in reasons]
    await send(sb, AUDIT_QUEUE, *(to_servicebus_message(e) for e in envelopes))
    by_id = dict(zip((e.id for e in envelopes), reasons, strict=True))
    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        left = set(by_id)
        while left:
            for message in await receiver.receive_messages(max_message_count=10, max_wait_time=5):
                reason = by_id[str(message.message_id)]
                await receiver.dead_letter_message(
                    message, reason=reason, error_description=f"why {reason}"
                )
                left.discard(str(message.message_id))
    return [e.id for e in envelopes]


async def test_list_show_replay_purge(sb: ServiceBusClient) -> None:
    ids = await dead_letter(sb, ["Broken", "Broken", "Other"])

    listed = await dlq.list_dead_letters(sb, AUDIT_QUEUE)
    assert sorted(item.message_id or "" for item in listed) == sorted(ids)
    assert {item.reason for item in listed} == {"Broken", "Other"}
    assert all(item.event_type == AUDIT_EVENT_TYPE for item in listed)
    one = await dlq.show(sb, AUDIT_QUEUE, listed[0].sequence_number)
    assert json.loads(one.body)["id"] == listed[0].message_id

    dry = await dlq.replay(sb, AUDIT_QUEUE, dlq.Selection(reason="Broken"), dry_run=True)
    assert len(dry.matched) == 2
    assert not dry.replayed
    assert len(await dlq.list_dead_letters(sb, AUDIT_QUEUE)) == 3  # nothing changed

    progress: list[int] = []
    done = await dlq.replay(
        sb, AUDIT_QUEUE, dlq.Selection(reason="Broken"), progress=progress.append, max_wait_time=2
    )
    assert len(done.replayed) == 2
    assert sum(progress) == 2

    async with sb.get_queue_receiver(AUDIT_QUEUE) as receiver:
        back = await receiver.receive_messages(max_message_count=5, max_wait_time=5)
        for message in back:
            await receiver.complete_message(message)
    assert len(back) == 2
    for message in back:
        properties = {
            (k.decode() if isinstance(k, bytes) else k): v
            for k, v in (message.application_properties or {}).items()
        }
        original = str(message.message_id).split(":replay:")[0]
        assert original in ids
        replayed_from = properties["replayedFromSequenceNumber"]
        assert isinstance(replayed_from, int)
        assert done.replayed[replayed_from] == message.message_id
        assert properties["replayedDeadLetterReason"] in ("Broken", b"Broken")
        assert properties["replayCount"] == 1
        assert "replayedAt" in properties
        assert "DeadLetterReason" not in properties
        assert json.loads(b"".join(message.body))["id"] == original  # same event

    remaining = await dlq.list_dead_letters(sb, AUDIT_QUEUE)
    assert [item.reason for item in remaining] == ["Other"]
    purged = await dlq.purge(sb, AUDIT_QUEUE, dlq.Selection(everything=True), max_wait_time=2)
    assert purged.purged == 1
    assert await dlq.list_dead_letters(sb, AUDIT_QUEUE) == []


async def test_replayed_message_is_processed_after_the_fix(
    sb: ServiceBusClient, db: Database, start_worker: StartWorker
) -> None:
    store = AuditStore(db)
    real = AuditHandler(store)
    broken = True

    async def handler(envelope: EventEnvelope) -> bool:
        if broken:
            raise PermanentError("BugInHandler", "cannot handle this yet")
        return await real(envelope)

    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", handler, FAST)})
    envelope = audit_envelope()
    await send(sb, AUDIT_QUEUE, to_servicebus_message(envelope))

    async def dead() -> bool:
        return running.stats().dead_lettered["BugInHandler"] == 1

    await eventually(dead)
    broken = False
    [item] = await dlq.list_dead_letters(sb, AUDIT_QUEUE)
    await dlq.replay(
        sb, AUDIT_QUEUE, dlq.Selection(sequence_numbers=frozenset({item.sequence_number}))
    )

    async def stored() -> bool:
        return await store.contains(envelope.id)

    await eventually(stored)
    assert await dlq.list_dead_letters(sb, AUDIT_QUEUE) == []


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli(sb: ServiceBusClient, connection_string: str) -> None:
    await dead_letter(sb, ["Broken", "Other"])
    conn = ("--connection-string", connection_string)

    listed = await asyncio.to_thread(cli, "dlq", "list", "--queue", AUDIT_QUEUE, "--json", *conn)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(row["reason"] for row in rows) == ["Broken", "Other"]
    assert {
        "sequence_number",
        "description",
        "delivery_count",
        "enqueued_time",
        "event_type",
    } <= set(rows[0])

    table = await asyncio.to_thread(cli, "dlq", "list", "--queue", AUDIT_QUEUE, *conn)
    assert "Broken" in table.stdout
    assert "why Broken" in table.stdout

    dry = await asyncio.to_thread(
        cli, "dlq", "replay", "--queue", AUDIT_QUEUE, "--reason", "Broken", "--dry-run", *conn
    )
    assert dry.returncode == 0
    assert "would replay 1 message(s)" in dry.stdout

    replayed = await asyncio.to_thread(
        cli, "dlq", "replay", "--queue", AUDIT_QUEUE, "--all", "--json", *conn
    )
    assert replayed.returncode == 0, replayed.stderr
    assert len(json.loads(replayed.stdout)["replayed"]) == 2

    # Nothing left to delete: no confirmation needed, even without a terminal.
    purge = await asyncio.to_thread(cli, "dlq", "purge", "--queue", AUDIT_QUEUE, "--all", *conn)
    assert purge.returncode == 0, purge.stderr
    assert "nothing purged" in purge.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dlq", "list", "--queue", "no-such-queue"), "does not exist"),
        (("dlq", "list", "--queue", AUDIT_QUEUE, "--bogus"), "No such option"),
        (("dlq", "replay", "--queue", AUDIT_QUEUE), "choose messages"),
        (("dlq", "replay", "--queue", AUDIT_QUEUE, "--older-than", "soon"), "not a duration"),
    ],
)
async def test_cli_user_errors_are_one_line(
    connection_string: str, args: tuple[str, ...], message: str
) -> None:
    result = await asyncio.to_thread(cli, *args, "--connection-string", connection_string)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("consumer: error:")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
