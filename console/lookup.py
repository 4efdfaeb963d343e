"""Where is event X: its outbox history, its messages on Service Bus, and what the consumer
did with it, gathered from every configured source into one :class:`EventReport`.

A source that is not configured or cannot be read leaves its part empty and adds a line to
``problems``; the rest of the report still comes.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.error_text import error_line
from console.services import Services
from console.sources.bus import QueuedMessage
from console.sources.consumer_store import Processing
from consumer.dlq import DeadLetteredMessage
from producer.outbox import OutboxRecord, OutboxStatus
from producer.outbox.records import IdempotencyKeyUse


@dataclass(frozen=True)
class Step:
    """One entry of the status history: what, when, detail."""

    status: str
    at: datetime | None
    detail: str = ""


@dataclass
class EventReport:
    """Everything known about one event id (or an Idempotency-Key's events)."""

    query: str
    entry: OutboxRecord | None = None
    key_uses: list[IdempotencyKeyUse] = field(default_factory=list)
    history: list[Step] = field(default_factory=list)
    processing: Processing | None = None
    on_queue: list[tuple[str, QueuedMessage]] = field(default_factory=list)
    dead_letters: list[tuple[str, DeadLetteredMessage]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.entry or self.processing or self.on_queue or self.dead_letters)

    @property
    def verdict(self) -> str:
        """One line: where the event is now."""
        if self.processing is not None and self.processing.done:
            return f"processed: {self.processing.what}"
        if self.dead_letters:
            reasons = sorted({item.reason or "no reason" for _, item in self.dead_letters})
            return f"dead-lettered: {', '.join(reasons)}"
        if self.on_queue:
            states = sorted({message.state for _, message in self.on_queue})
            return f"on its queue, not processed yet ({', '.join(states)})"
        if self.processing is not None:
            return self.processing.what
        if self.entry is not None:
            return {
                OutboxStatus.ACCEPTED: "in the outbox, not published yet",
                OutboxStatus.CANCELLED: "cancelled",
                OutboxStatus.FAILED: "failed: can never be sent",
            }.get(self.entry.status, "published; the consumer has not recorded it yet")
        return "not found"


def history(record: OutboxRecord, now: datetime | None = None) -> list[Step]:
    """The outbox row's life as steps (the producer's ``GET /v1/events/{id}``, in order)."""
    now = now or datetime.now(UTC)
    steps = [Step("accepted", record.accepted_at, f"source {record.source}")]
    status = record.status
    if status is OutboxStatus.ACCEPTED:
        waiting = f"{record.attempts} send attempt(s)"
        if record.last_error:
            waiting += f"; last error: {record.last_error}"
        steps.append(Step("waiting to be published", None, waiting))
    elif status is OutboxStatus.PUBLISHED:
        steps.append(Step("published", record.finished_at, f"to {record.queue}"))
    elif status is OutboxStatus.SCHEDULED:
        number = f", sequence number {record.sequence_number}" if record.sequence_number else ""
        when = record.deliver_at.isoformat() if record.deliver_at else "?"
        steps.append(Step("scheduled", record.finished_at, f"for {when}{number}"))
        if record.deliver_at is not None and record.deliver_at <= now:
            steps.append(Step("published", record.deliver_at, "scheduled enqueue time reached"))
    elif status is OutboxStatus.CANCELLED:
        steps.append(Step("cancelled", record.finished_at))
    elif status is OutboxStatus.FAILED:
        steps.append(Step("failed", record.finished_at, record.last_error or ""))
    return steps


async def find_event(services: Services, query: str) -> EventReport:
    """Look ``query`` up as an event id, else as an Idempotency-Key (one event: its report)."""
    report = EventReport(query)
    if services.outbox is not None:
        try:
            report.entry = await services.outbox.get(query)
            if report.entry is None:
                report.key_uses = await services.outbox.key_uses(query)
        except Exception as error:
            report.problems.append(f"outbox: {error_line(error)}")
    else:
        report.problems.append("outbox: not configured (CONSOLE_OUTBOX_DATABASE_URL)")
    ids = {event_id for use in report.key_uses for event_id in use.event_ids}
    if report.entry is None and len(ids) == 1 and services.outbox is not None:
        only = ids.pop()
        found = await find_event(services, only)
        found.key_uses = report.key_uses
        return found
    if report.key_uses:
        return report
    await _follow(services, report, query)
    return report


async def _follow(services: Services, report: EventReport, event_id: str) -> None:
    if report.entry is not None:
        report.history = history(report.entry)
        queues: tuple[str, ...] = (report.entry.queue,)
    else:
        queues = services.settings.queues
    if services.store is not None:
        try:
            report.processing = await services.store.processing(event_id)
        except Exception as error:
            report.problems.append(f"consumer store: {error_line(error)}")
    else:
        report.problems.append("consumer store: not configured (CONSOLE_AUDIT_STORE_URL)")
    for queue in queues:
        try:
            report.dead_letters += [
                (queue, m) for m in await services.bus.dead_letters(queue, event_id)
            ]
            report.on_queue += [(queue, m) for m in await services.bus.on_queue(queue, event_id)]
        except Exception as error:
            report.problems.append(f"queue {queue}: {error_line(error)}")
