"""Append-only, hash-chained audit store (SQLite by default, PostgreSQL by URL).

Appends serialise on the chain head: ``SELECT ... FOR UPDATE`` on ``audit_chain_head`` on
PostgreSQL (so replicas sharing the database chain correctly), ``BEGIN IMMEDIATE`` plus an
in-process lock on SQLite. Each append also writes the idempotency inbox row in the same
transaction, so an event is recorded at most once however often it is delivered.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from common.batching import Batcher
from consumer.stores.chain import GENESIS_HASH, record_hash, timestamp
from consumer.stores.database import Database, as_utc
from consumer.stores.inbox import Inbox
from consumer.stores.schema import audit_chain_head, audit_events
from contracts import AuditEnvelope

INBOX_HANDLER = "audit"


@dataclass(frozen=True)
class AuditRecord:
    """One stored audit record (times are aware UTC datetimes)."""

    seq: int
    event_id: str
    source: str
    actor_id: str
    actor_type: str
    action: str
    resource_type: str
    resource_id: str
    outcome: str
    tenant: str | None
    occurred_at: datetime
    accepted_at: datetime
    recorded_at: datetime
    correlation_id: str | None
    event: dict[str, Any]
    prev_hash: str
    hash: str

    def hashed_content(self) -> dict[str, Any]:
        """The document whose canonical JSON is hashed (everything except ``hash``)."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "source": self.source,
            "actor_id": self.actor_id,
            "actor_type": self.actor_type,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "outcome": self.outcome,
            "tenant": self.tenant,
            "occurred_at": timestamp(self.occurred_at),
            "accepted_at": timestamp(self.accepted_at),
            "recorded_at": timestamp(self.recorded_at),
            "correlation_id": self.correlation_id,
            "event": self.event,
            "prev_hash": self.prev_hash,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO-8601 strings)."""
        return {**self.hashed_content(), "hash": self.hash}

    @classmethod
    def from_row(cls, row: Row[Any]) -> "AuditRecord":
        values = dict(row._mapping)
        for name in ("occurred_at", "accepted_at", "recorded_at"):
            values[name] = as_utc(values[name])
        return cls(**values)


@dataclass(frozen=True)
class ChainReport:
    """Result of :meth:`AuditStore.verify`.

    Attributes:
        ok: True when every record and the chain head check out.
        checked: Records examined.
        head_seq: Sequence number the chain head claims.
        first_bad_seq: Sequence number of the first record that fails (None when ok).
        first_bad_event_id: Its event id, when the record exists.
        problem: What is wrong with it, one line.
    """

    ok: bool
    checked: int
    head_seq: int
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class AuditQuery:
    """Filters for :meth:`AuditStore.query`; ``None`` means "any".

    Attributes:
        actor: Actor id, exact.
        action: Action, exact, or a prefix ending in ``*`` (``invoice.*``).
        resource: ``type:id``, or ``type`` alone.
        tenant: Tenant, exact.
        since: Occurred at or after (aware datetime).
        until: Occurred before (aware datetime).
        limit: Most records returned, newest first.
    """

    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


class AuditStore:
    """Records audit events in a hash chain.

    Args:
        database: The consumer's database (migrated with :meth:`Database.migrate`).
        inbox: Idempotency inbox in the same database.
    """

    def __init__(self, database: Database, inbox: Inbox | None = None) -> None:
        self._db = database
        self._inbox = inbox or Inbox(database)
        # One group at a time, in arrival order: each group extends the chain head the
        # previous one left. A group with a bad event (IntegrityError) is appended again
        # one event per transaction, so that event fails alone.
        self._appender: Batcher[AuditEnvelope, bool] = Batcher(
            self._append_group,
            flush_one=self._append_one,
            isolate=(IntegrityError,),
            max_size=GROUP_MAX,
            name="audit-append",
        )

    async def append(self, envelope: AuditEnvelope) -> bool:
        """Record the event at the end of the chain.

        Concurrent calls are appended together, in one transaction (group commit): the
        chain head is read and written once per group, not once per event, which on
        SQLite (one writer) is what bounds the rate.

        A caller cancelled while it waits does not withdraw its event: it is appended
        with its group (and, were it not, redelivery would append it).

        Returns:
            ``False`` when this event id was already recorded (nothing written).
        """
        return await self._appender.submit(envelope)

    async def _append_group(self, envelopes: list[AuditEnvelope]) -> list[bool]:
        now = datetime.now(UTC)
        async with self._db.write() as connection:
            new = await self._inbox.record_many(
                connection, INBOX_HANDLER, [e.id for e in envelopes], now
            )
            head = await _lock_head(connection)
            seq, previous = int(head.seq), str(head.hash)
            rows: list[dict[str, Any]] = []
            results: list[bool] = []
            for envelope in envelopes:
                if envelope.id not in new:
                    results.append(False)
                    continue
                new.discard(envelope.id)  # a second copy in the same group is a duplicate
                seq += 1
                record = _record(envelope, seq, previous, now)
                previous = record_hash(record.hashed_content())
                rows.append({**record.__dict__, "hash": previous})
                results.append(True)
            if rows:
                await connection.execute(insert(audit_events), rows)
                await connection.execute(
                    update(audit_chain_head)
                    .where(audit_chain_head.c.id == 1)
                    .values(seq=seq, hash=previous)
                )
        return results

    async def _append_one(self, envelope: AuditEnvelope) -> bool:
        now = datetime.now(UTC)
        try:
            async with self._db.write() as connection:
                if not await self._inbox.record(connection, INBOX_HANDLER, envelope.id, now):
                    return False
                head = await _lock_head(connection)
                record = _record(envelope, int(head.seq) + 1, head.hash, now)
                digest = record_hash(record.hashed_content())
                values = {**record.__dict__, "hash": digest}
                await connection.execute(insert(audit_events).values(values))
                await connection.execute(
                    update(audit_chain_head)
                    .where(audit_chain_head.c.id == 1)
                    .values(seq=record.seq, hash=digest)
                )
        except IntegrityError:
            # The inbox row was pruned but the event is in the chain already.
            if await self.contains(envelope.id):
                return False
            raise
        return True

    async def contains(self, event_id: str) -> bool:
        async with self._db.engine.connect() as connection:
            found = await connection.scalar(
                select(audit_events.c.seq).where(audit_events.c.event_id == event_id)
            )
        return found is not None

    async def count(self) -> int:
        """Number of records."""
        async with self._db.engine.connect() as connection:
            total = await connection.scalar(select(func.count()).select_from(audit_events))
        return int(total or 0)

    async def query(self, filters: AuditQuery) -> list[AuditRecord]:
        """Records matching ``filters``, newest (highest ``seq``) first."""
        statement = select(audit_events).order_by(audit_events.c.seq.desc()).limit(filters.limit)
        if filters.actor is not None:
            statement = statement.where(audit_events.c.actor_id == filters.actor)
        if filters.action is not None:
            if filters.action.endswith("*"):
                prefix = filters.action[:-1]
                statement = statement.where(audit_events.c.action.startswith(prefix))
            else:
                statement = statement.where(audit_events.c.action == filters.action)
        if filters.resource is not None:
            resource_type, _, resource_id = filters.resource.partition(":")
            statement = statement.where(audit_events.c.resource_type == resource_type)
            if resource_id:
                statement = statement.where(audit_events.c.resource_id == resource_id)
        if filters.tenant is not None:
            statement = statement.where(audit_events.c.tenant == filters.tenant)
        if filters.since is not None:
            statement = statement.where(audit_events.c.occurred_at >= filters.since)
        if filters.until is not None:
            statement = statement.where(audit_events.c.occurred_at < filters.until)
        async with self._db.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [AuditRecord.from_row(row) for row in rows]

    async def verify(self, batch_size: int = 1000) -> ChainReport:
        """Walk the chain from the first record and check every link.

        A record is bad when its ``seq`` is not the next number (a deletion), its
        ``prev_hash`` is not the previous record's hash (reordering, deletion), or its
        ``hash`` does not match its content (an edit). The chain head must name the last
        record (a truncated tail).
        """
        async with self._db.engine.connect() as connection:
            head = (
                await connection.execute(
                    select(audit_chain_head.c.seq, audit_chain_head.c.hash).where(
                        audit_chain_head.c.id == 1
                    )
                )
            ).one()
            expected_seq, previous, checked = 1, GENESIS_HASH, 0
            while True:
                rows: Sequence[Row[Any]] = (
                    await connection.execute(
                        select(audit_events)
                        .where(audit_events.c.seq >= expected_seq)
                        .order_by(audit_events.c.seq)
                        .limit(batch_size)
                    )
                ).all()
                if not rows:
                    break
                for row in rows:
                    record = AuditRecord.from_row(row)
                    problem = _check(record, expected_seq, previous)
                    if problem is not None:
                        return ChainReport(
                            False, checked, int(head.seq), record.seq, record.event_id, problem
                        )
                    checked += 1
                    expected_seq, previous = record.seq + 1, record.hash
        last_seq = expected_seq - 1
        if int(head.seq) != last_seq or head.hash != previous:
            return ChainReport(
                False,
                checked,
                int(head.seq),
                last_seq + 1 if int(head.seq) > last_seq else last_seq,
                None,
                f"chain head says seq {head.seq} / {head.hash[:12]}..., "
                f"records end at seq {last_seq} / {previous[:12]}... (records missing or added)",
            )
        return ChainReport(True, checked, int(head.seq))


GROUP_MAX = 200
"""Most events appended in one transaction."""


async def _lock_head(connection: AsyncConnection) -> Row[Any]:
    """The chain head (``seq``, ``hash``), locked for this transaction on PostgreSQL."""
    return (
        await connection.execute(
            select(audit_chain_head.c.seq, audit_chain_head.c.hash)
            .where(audit_chain_head.c.id == 1)
            .with_for_update()
        )
    ).one()


def _record(envelope: AuditEnvelope, seq: int, prev_hash: str, now: datetime) -> AuditRecord:
    data = envelope.data
    tenant = getattr(data, "tenant_id", None) or getattr(data, "tenant", None)
    return AuditRecord(
        seq=seq,
        event_id=envelope.id,
        source=envelope.source,
        actor_id=data.actor.id,
        actor_type=data.actor.type.value,
        action=data.action,
        resource_type=data.resource.type,
        resource_id=data.resource.id,
        outcome=data.outcome.value,
        tenant=str(tenant) if tenant is not None else None,
        occurred_at=data.occurred_at,
        accepted_at=envelope.time,
        recorded_at=now,
        correlation_id=envelope.correlationid,
        event=envelope.model_dump(mode="json", exclude_none=True),
        prev_hash=prev_hash,
        hash="",
    )


def _check(record: AuditRecord, expected_seq: int, previous: str) -> str | None:
    if record.seq != expected_seq:
        return f"expected seq {expected_seq}, found {record.seq} (records missing)"
    if record.prev_hash != previous:
        return "prev_hash does not match the previous record's hash"
    try:
        recomputed = record_hash(record.hashed_content())
    except ValueError as exc:
        return f"content cannot be hashed: {exc}"
    if recomputed != record.hash:
        return "content does not match its hash (record edited)"
    return None
