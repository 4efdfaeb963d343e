"""What ``make run`` polls: the dead-letter queues over one long-lived client (finding a
message dead-lettered after a poll even when it sorts before those seen), and the
consumer's tables over one SQLite connection."""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psutil
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tools.demo_watch import ConsumerTables, Processing, ServiceBusWatch


def emulator_port(connection_string: str) -> int:
    endpoint = connection_string.split(";")[0]  # Endpoint=sb://127.0.0.1:PORT
    return int(endpoint.rsplit(":", 1)[1].strip("/"))


def client_ports(port: int) -> set[int]:
    """Local ports of this process's established connections to the emulator."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def test_dead_letters_are_found_whatever_their_order_over_one_connection(
    connection_string: str,
) -> None:
    port = emulator_port(connection_string)
    with ServiceBusClient.from_connection_string(connection_string) as client:
        with client.get_queue_sender(AUDIT_QUEUE) as sender:
            sender.send_messages([ServiceBusMessage(b"x", message_id=m) for m in "abc"])
        with client.get_queue_receiver(AUDIT_QUEUE, max_wait_time=5) as receiver:
            locked: dict[str, ServiceBusReceivedMessage] = {}
            while len(locked) < 3:
                for message in receiver.receive_messages(max_message_count=3):
                    locked[str(message.message_id)] = message
            assert [locked[m].sequence_number for m in "abc"] == sorted(
                locked[m].sequence_number or 0 for m in "abc"
            )
            baseline = client_ports(port)
            with ServiceBusWatch(connection_string, (AUDIT_QUEUE, NOTIFICATIONS_QUEUE)) as watch:
                assert watch.dead_letters() == {}
                ours = client_ports(port) - baseline
                assert len(ours) == 2  # the SDK gives each (dead-letter) receiver a connection

                receiver.dead_letter_message(locked["c"], reason="Third")
                assert watch.dead_letters() == {"c": "Third"}
                # "a" sorts before "c", already seen: a poll must still find it.
                receiver.dead_letter_message(locked["a"], reason="First")
                assert watch.dead_letters() == {"a": "First", "c": "Third"}
                receiver.dead_letter_message(locked["b"], reason="Second")
                assert watch.dead_letters() == {"a": "First", "b": "Second", "c": "Third"}

                assert client_ports(port) - baseline == ours  # the same connections throughout


def test_consumer_tables_read_processed_events_once_the_database_exists(tmp_path: Path) -> None:
    path = tmp_path / "consumer.db"
    with ConsumerTables(path) as tables:
        assert tables.processed() == {}  # the consumer has not started yet
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE audit_events (event_id, accepted_at, recorded_at)")
        assert tables.processed() == {}  # the deliveries table is not there yet
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE deliveries (event_id, accepted_at, delivered_at, status)")
            db.execute(
                "INSERT INTO audit_events VALUES "
                "('e1', '2026-12-07 05:00:00.100000+00:00', '2026-12-07 05:00:00.350000+00:00')"
            )
            db.executemany(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?)",
                [
                    ("n1", "2026-12-07T05:00:01", "2026-12-07T05:00:01.5", "delivered"),
                    ("n2", "2026-12-07T05:00:01", None, "claimed"),
                ],
            )

        found = tables.processed()

    at = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    assert found == {
        "e1": Processing(at.replace(microsecond=100000), at.replace(microsecond=350000)),
        "n1": Processing(at.replace(second=1), at.replace(second=1, microsecond=500000)),
    }
    assert found["e1"].seconds == 0.25
