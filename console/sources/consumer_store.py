"""The consumer's database: what it did with an event, its outcomes per minute, the audit
chain, and the console's own audit records.

The console's actions (replay, purge, verify) are appended straight to the audit chain
with the consumer's :class:`~consumer.stores.audit.AuditStore`: the console needs this
store anyway (to verify it), the append is chained and committed before the result page is
shown, and it works while the producer is down. Publishing through the producer's API
would need a producer API key for the console and leave the record in flight when the
page says "done". ``AuditStore`` serialises appends on the chain head across processes
(``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on PostgreSQL), so the console
and the consumer extend one chain.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from consumer.stores.audit import AuditQuery, AuditRecord, AuditStore, ChainReport
from consumer.stores.database import Database, as_utc
from consumer.stores.outcomes import OutcomeCount, OutcomeStore
from consumer.stores.schema import audit_events, consumer_inbox, deliveries
from contracts import AuditEnvelope

ACTION_PREFIX = "console."
VERIFY_ACTION = "console.audit.verify"


@dataclass(frozen=True)
class Processing:
    """What the consumer recorded for one event id.

    Attributes:
        what: ``recorded in the audit chain``, ``delivered``, ``rejected``, ``being
            delivered``, ``delivery failed (will retry)`` or ``seen by <handler>``.
        at: When (aware UTC).
        detail: Chain position, attempts, last error, ...
        done: Whether the consumer is finished with it.
    """

    what: str
    at: datetime | None
    detail: str
    done: bool


_DELIVERY_STATES = {
    "delivered": ("delivered", True),
    "rejected": ("rejected (permanent failure)", True),
    "sending": ("being delivered", False),
    "failed": ("delivery failed (will retry)", False),
}


class ConsumerStore:
    """Reads of the consumer's tables, chain verification and console audit records.

    Args:
        url: SQLAlchemy async URL (``CONSUMER_AUDIT_STORE_URL``). The schema belongs to the
            consumer (it migrates at start-up); the console never migrates it.
    """

    def __init__(self, url: str) -> None:
        self.database = Database(url)
        self.audit = AuditStore(self.database)
        self._outcomes = OutcomeStore(self.database)

    async def processing(self, event_id: str) -> Processing | None:
        """What the consumer recorded for ``event_id``, or ``None`` (nothing yet)."""
        async with self.database.engine.connect() as connection:
            chained = (
                await connection.execute(
                    select(audit_events.c.seq, audit_events.c.recorded_at).where(
                        audit_events.c.event_id == event_id
                    )
                )
            ).first()
            if chained is not None:
                return Processing(
                    "recorded in the audit chain",
                    as_utc(chained.recorded_at),
                    f"chain position {chained.seq}",
                    True,
                )
            delivery = (
                await connection.execute(
                    select(
                        deliveries.c.status,
                        deliveries.c.attempts,
                        deliveries.c.updated_at,
                        deliveries.c.last_error,
                        deliveries.c.channel,
                    ).where(deliveries.c.event_id == event_id)
                )
            ).first()
            if delivery is not None:
                what, done = _DELIVERY_STATES.get(delivery.status, (delivery.status, False))
                detail = f"{delivery.channel}, {delivery.attempts} attempt(s)"
                if delivery.last_error:
                    detail += f"; last error: {delivery.last_error}"
                return Processing(what, as_utc(delivery.updated_at), detail, done)
            seen = (
                await connection.execute(
                    select(consumer_inbox.c.handler, consumer_inbox.c.processed_at).where(
                        consumer_inbox.c.event_id == event_id
                    )
                )
            ).first()
        if seen is not None:
            return Processing(f"seen by {seen.handler}", as_utc(seen.processed_at), "", True)
        return None

    async def outcomes_since(self, start: datetime) -> list[OutcomeCount]:
        """The consumer's outcomes per UTC minute from ``start``'s minute on, every replica
        summed (``consumer_outcomes``, written by each consumer every
        ``CONSUMER_OUTCOME_FLUSH_INTERVAL``).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: unreadable (e.g. a consumer from before the
                table, revision 0003, never migrated this database).
        """
        return await self._outcomes.since(start)

    async def verify(self) -> ChainReport:
        """Walk the whole chain (:meth:`AuditStore.verify`)."""
        return await self.audit.verify()

    async def append(self, envelope: AuditEnvelope) -> None:
        """Append one of the console's audit records to the chain."""
        await self.audit.append(envelope)

    async def last_verification(self) -> AuditRecord | None:
        """The newest ``console.audit.verify`` record (its details hold the result)."""
        found = await self.audit.query(AuditQuery(action=VERIFY_ACTION, limit=1))
        return found[0] if found else None

    async def recent_actions(self, limit: int = 20) -> list[AuditRecord]:
        """The console's newest audit records (replays, purges, verifications)."""
        return await self.audit.query(AuditQuery(action=f"{ACTION_PREFIX}*", limit=limit))

    async def close(self) -> None:
        await self.database.close()


def report_details(report: ChainReport) -> dict[str, Any]:
    """A verification result as the ``details`` of its audit record."""
    return {
        "ok": report.ok,
        "checked": report.checked,
        "head_seq": report.head_seq,
        "first_bad_seq": report.first_bad_seq,
        "first_bad_event_id": report.first_bad_event_id,
        "problem": report.problem,
        "verified_at": datetime.now(UTC).isoformat(),
    }
