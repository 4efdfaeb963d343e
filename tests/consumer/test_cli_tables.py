"""`dlq list` and `audit query` fit an 80-column terminal: one line per row, key fields whole."""

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

from azure.servicebus.aio import ServiceBusClient

from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from contracts import AuditEvent, new_envelope
from tests.conftest import AUDIT_QUEUE
from tests.consumer.test_dlq_selection import cli, dead_letter_messages


def assert_fits(output: str, width: int = 80) -> list[str]:
    lines = output.splitlines()
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, "\n".join(too_wide)
    return lines


async def test_dlq_list_fits_80_columns_with_sequence_number_and_reason_whole(
    sb: ServiceBusClient, connection_string: str
) -> None:
    long_id = "order-" + "0123456789" * 9
    await dead_letter_messages(
        sb,
        [(long_id, "MaxDeliveryCountExceeded"), ("poison-1", "InvalidJson")],
        description="Message could not be consumed after 10 delivery attempts. " * 4,
    )

    result = await asyncio.to_thread(
        cli, "dlq", "list", "--queue", AUDIT_QUEUE, "--connection-string", connection_string
    )

    assert result.returncode == 0, result.stderr
    lines = assert_fits(result.stdout)
    rows = [line for line in lines if re.match(r"^\s*\d+\s", line)]
    assert [row.split()[1] for row in rows] == ["MaxDeliveryCountExceeded", "InvalidJson"]
    assert all("…" in row for row in rows[:1])  # the long description and id are cut
    assert "poison-1" in rows[1]


async def test_audit_query_fits_80_columns_with_sequence_number_and_time_whole(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    database = Database(url)
    await database.migrate()
    occurred = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    try:
        store = AuditStore(database)
        for n in range(3):
            event = AuditEvent(
                actor={"id": f"service-account-with-a-long-name-{n}"},
                action="invoice.approve.with.a.long.action.name",
                resource={"type": "invoice", "id": f"INV-{n:06d}-with-a-long-suffix"},
                outcome="success",
                occurred_at=occurred,
            )
            await store.append(new_envelope(event, source="/tests"))
    finally:
        await database.close()

    result = await asyncio.to_thread(cli, "audit", "query", "--store-url", url)

    assert result.returncode == 0, result.stderr
    lines = assert_fits(result.stdout)
    rows = [line for line in lines if re.match(r"^\s*\d+\s+\d{4}-", line)]
    assert [row.split()[:3] for row in rows] == [
        [str(seq), "2026-11-21", "09:30:00"] for seq in (3, 2, 1)
    ]
    assert all("success" in row for row in rows)
