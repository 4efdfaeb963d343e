"""What ``make run`` polls while it waits: the dead-letter queues and the consumer's tables.

Each watcher keeps one connection for the whole run (one ``ServiceBusClient`` with one
dead-letter receiver per queue, one SQLite connection) instead of opening one per poll.
"""

import sqlite3
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)

_PEEK_PAGE = 250


class _Resources:
    """What a watcher opens goes on one :class:`~contextlib.ExitStack`; :meth:`close` (or
    leaving ``with``) closes it all, last opened first."""

    def __init__(self) -> None:
        self._resources = ExitStack()

    def close(self) -> None:
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ServiceBusWatch(_Resources):
    """One ``ServiceBusClient`` for the run: sends poison messages, peeks dead-letter queues.

    Args:
        connection_string: The namespace (SAS connection string).
        queues: Queues whose dead-letter queues :meth:`dead_letters` peeks.
    """

    def __init__(self, connection_string: str, queues: tuple[str, ...]) -> None:
        super().__init__()
        self._client = self._resources.enter_context(
            ServiceBusClient.from_connection_string(connection_string)
        )
        self._queues = queues
        self._dlq: dict[str, ServiceBusReceiver] = {}

    def send(self, queue: str, messages: list[ServiceBusMessage]) -> None:
        """Send ``messages`` to ``queue`` in one call (a foreign producer's way in)."""
        with self._client.get_queue_sender(queue) as sender:
            sender.send_messages(messages)

    def dead_letters(self) -> dict[str, str]:
        """message id -> dead-letter reason of every message now in the queues' DLQs.

        Peeks (does not receive), always from sequence number 1: a dead-lettered message
        keeps the sequence number it got when its queue accepted it
        (https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing), so
        one dead-lettered later can sort before those already seen.
        """
        found: dict[str, str] = {}
        for queue in self._queues:
            receiver = self._dlq.get(queue)
            if receiver is None:
                receiver = self._resources.enter_context(
                    self._client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
                )
                self._dlq[queue] = receiver
            sequence = 1
            while batch := receiver.peek_messages(
                max_message_count=_PEEK_PAGE, sequence_number=sequence
            ):
                for message in batch:
                    found[str(message.message_id)] = message.dead_letter_reason or ""
                sequence = (batch[-1].sequence_number or 0) + 1
        return found


@dataclass(frozen=True)
class Processing:
    """When the producer accepted an event and when the consumer finished it (UTC)."""

    accepted_at: datetime
    done_at: datetime

    @property
    def seconds(self) -> float:
        """Acceptance to processing, in seconds."""
        return (self.done_at - self.accepted_at).total_seconds()


_PROCESSED = (
    "SELECT event_id, accepted_at, recorded_at FROM audit_events",
    "SELECT event_id, accepted_at, delivered_at FROM deliveries WHERE status = 'delivered'",
)


class ConsumerTables(_Resources):
    """Reads the consumer's SQLite audit store over one connection, opened once it exists.

    Args:
        path: The consumer's database file (``CONSUMER_AUDIT_STORE_URL``).
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._db: sqlite3.Connection | None = None

    def processed(self) -> dict[str, Processing]:
        """event id -> :class:`Processing` of every audit event stored and every
        notification delivered so far (empty before the consumer created its tables)."""
        if self._db is None:
            if not self._path.exists():
                return {}
            # Autocommit: a read never holds a transaction open against the consumer's writes.
            self._db = sqlite3.connect(self._path, isolation_level=None)
            self._resources.callback(self._forget_db, self._db)
        found: dict[str, Processing] = {}
        for query in _PROCESSED:
            try:
                rows = self._db.execute(query).fetchall()
            except sqlite3.OperationalError:  # tables not migrated yet
                continue
            for event_id, accepted, done in rows:
                found[event_id] = Processing(_utc(accepted), _utc(done))
        return found

    def _forget_db(self, db: sqlite3.Connection) -> None:
        db.close()  # sqlite3's own context manager only commits: it never closes
        self._db = None


def _utc(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
