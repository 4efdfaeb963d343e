"""Reads and writes of the outbox tables. All times are aware UTC datetimes.

Claims: a row that some process is publishing carries ``lease_owner`` (a claim token,
``<instance id>/<random>``) and ``lease_until``. Only rows whose lease is absent or expired
can be claimed, and on PostgreSQL the claim query skips rows another transaction is
claiming at the same moment (``FOR UPDATE SKIP LOCKED``), so replicas sharing a database
do not publish the same row in the normal case. A replica that dies mid-publish leaves
its rows leased until ``lease_until``; another claims them then and re-sends them, and
Service Bus duplicate detection drops the copies (the message id is the event id).
"""

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    and_,
    delete,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from producer.outbox.models import OutboxStatus, idempotency_keys, outbox
from producer.outbox.records import (
    Backlog,
    ClaimedEvent,
    IdempotencyKeyUse,
    IdempotencyRecord,
    NewEvent,
    OutboxRecord,
)

Executor = AsyncConnection | AsyncSession
"""Where an insert runs: the producer's own connection or an application's session."""

_MAX_ERROR_LENGTH = 1000
_MAX_IDS_PER_STATEMENT = 500
"""Coalesced marks can name thousands of rows; SQLite allows 999 bound parameters before 3.32."""


# --- query plans ---------------------------------------------------------------------------
# Without fresh statistics (a new table, or statistics taken while almost every row was
# published) both SQLite and PostgreSQL estimate ``status = 'accepted'`` to match a handful
# of rows, so they drive the relay's queries from the index on ``status``: every claim and
# every ``id IN (...)`` update then visits the whole backlog (and PostgreSQL sorts it) --
# O(backlog) per batch just when a backlog has to be drained. The helpers below keep the
# plans that are right whatever the statistics say.


class _Likely(FunctionElement[bool]):
    """SQLite's ``likely(X)`` (X, and a hint that it is usually true); plain X elsewhere.

    Untyped on purpose: a ``Boolean`` function is rendered ``likely(X) = 1`` on SQLite,
    which no longer matches the partial index's ``WHERE``.
    """

    name = "likely"
    inherit_cache = True


@compiles(_Likely)
def _likely_plain(element: _Likely, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Likely, "sqlite")
def _likely_sqlite(element: _Likely, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likely({compiler.process(element.clauses, **kw)})"


_PENDING = _Likely(outbox.c.status == literal_column(f"'{OutboxStatus.ACCEPTED.value}'"))
"""``status = 'accepted'`` that walks the partial index ``ix_producer_outbox_pending``.

The literal (not a bound parameter) lets SQLite match the index's ``WHERE``; ``likely``
stops SQLite from preferring ``ix_producer_outbox_finished`` plus a sort of all pending rows.
"""


def _still(status: OutboxStatus) -> ColumnElement[bool]:
    """``status = <status>`` as a filter only, never the index that finds the rows.

    For updates that find their rows by id or lease owner: ``status || ''`` matches no index,
    so the planner looks the rows up by their key instead of scanning every row in
    ``status`` (the whole backlog, for ``accepted``).
    """
    return outbox.c.status.op("||")(literal_column("''")) == status.value


def _claimed(rows: Sequence[Row[Any]]) -> list[ClaimedEvent]:
    """Claimed rows, oldest first (RETURNING gives no order)."""
    ordered = sorted(rows, key=lambda r: (r.accepted_at, r.id))
    return [ClaimedEvent.of(r) for r in ordered]


_CLAIM_COLUMNS = (
    outbox.c.id,
    outbox.c.queue,
    outbox.c.body,
    outbox.c.deliver_at,
    outbox.c.accepted_at,
    outbox.c.trace_context,
)


class OutboxRepository:
    """Outbox and idempotency-key queries.

    Methods that take an ``executor`` run in the caller's transaction (which the caller
    commits); the others open and commit their own short transaction on ``engine``.

    Args:
        engine: The outbox database.
        lease: How long a claim reserves a row.
    """

    def __init__(self, engine: AsyncEngine, *, lease: timedelta) -> None:
        self.engine = engine
        self.lease = lease

    # --- writing new events ----------------------------------------------------------------

    async def insert(
        self,
        executor: Executor,
        events: Sequence[NewEvent],
        *,
        claim: str | None,
        now: datetime,
        attempts: int = 0,
    ) -> None:
        """Insert ``events`` as ``accepted``, already leased to the claim token ``claim``.

        ``attempts`` is 1 when the caller publishes them right after commit without a
        claim query (which would otherwise count the attempt).

        The lease lets the process that accepted them publish them right after commit
        without a relay of another replica racing it; if that process dies, the lease
        runs out and any relay takes over. With ``claim=None`` the rows are left for the
        relay loops.

        Raises:
            sqlalchemy.exc.IntegrityError: an event id already exists.
        """
        if not events:
            return
        await executor.execute(
            outbox.insert(),
            [
                {
                    "id": e.id,
                    "event_type": e.event_type,
                    "queue": e.queue,
                    "source": e.source,
                    "body": e.body,
                    "status": OutboxStatus.ACCEPTED.value,
                    "accepted_at": now,
                    "deliver_at": e.deliver_at,
                    "attempts": attempts,
                    "lease_owner": claim,
                    "lease_until": None if claim is None else now + self.lease,
                    "trace_context": e.trace_context,
                }
                for e in events
            ],
        )

    async def find_idempotency_key(
        self, executor: Executor, principal: str, key: str
    ) -> IdempotencyRecord | None:
        """The record of ``principal``'s ``key``, if it was used."""
        result = await executor.execute(
            select(
                idempotency_keys.c.fingerprint,
                idempotency_keys.c.event_ids,
                idempotency_keys.c.created_at,
            ).where(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
        )
        row = result.first()
        if row is None:
            return None
        return IdempotencyRecord(
            fingerprint=row[0], event_ids=list(json.loads(row[1])), created_at=row[2]
        )

    async def idempotency_key_uses(self, key: str) -> list[IdempotencyKeyUse]:
        """Every caller's use of ``key``, newest first (for operators: keys are per caller,
        so one key may name several callers' requests)."""
        statement = (
            select(
                idempotency_keys.c.principal,
                idempotency_keys.c.event_ids,
                idempotency_keys.c.created_at,
            )
            .where(idempotency_keys.c.key == key)
            .order_by(idempotency_keys.c.created_at.desc())
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [IdempotencyKeyUse(row[0], list(json.loads(row[1])), row[2]) for row in rows]

    async def insert_idempotency_key(
        self,
        executor: Executor,
        principal: str,
        key: str,
        *,
        fingerprint: str,
        event_ids: Sequence[str],
        now: datetime,
    ) -> None:
        """Record that ``principal``'s ``key`` produced ``event_ids``.

        Raises:
            sqlalchemy.exc.IntegrityError: the key was recorded concurrently.
        """
        await executor.execute(
            idempotency_keys.insert().values(
                principal=principal,
                key=key,
                fingerprint=fingerprint,
                event_ids=json.dumps(list(event_ids)),
                created_at=now,
            )
        )

    # --- publishing ------------------------------------------------------------------------

    async def claim_pending(self, claim: str, *, limit: int, now: datetime) -> list[ClaimedEvent]:
        """Lease up to ``limit`` unleased (or lease-expired) ``accepted`` rows, oldest first."""
        free = or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now)
        candidates = (
            select(outbox.c.id)
            .where(_PENDING, free)
            .order_by(outbox.c.accepted_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(outbox)
            .where(outbox.c.id.in_(candidates), _still(OutboxStatus.ACCEPTED))
            .values(
                lease_owner=claim,
                lease_until=now + self.lease,
                attempts=outbox.c.attempts + 1,
            )
            .returning(*_CLAIM_COLUMNS)
        )
        async with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Walk the pending index in accepted_at order and stop after ``limit``
                # free rows, rather than fetch and sort every pending row, which is
                # what PostgreSQL picks when it believes few rows are pending.
                await connection.execute(text("SET LOCAL enable_sort = off"))
            rows = (await connection.execute(statement)).all()
        return _claimed(rows)

    async def claim_own(self, claim: str, *, now: datetime) -> list[ClaimedEvent]:
        """Renew the lease on the committed ``accepted`` rows inserted with ``claim``.

        Returns nothing when they were never committed (the transaction rolled back), are
        already published, or were taken over by another claim after the lease ran out.
        """
        statement = (
            update(outbox)
            .where(outbox.c.lease_owner == claim, _still(OutboxStatus.ACCEPTED))
            .values(lease_until=now + self.lease, attempts=outbox.c.attempts + 1)
            .returning(*_CLAIM_COLUMNS)
        )
        async with self.engine.begin() as connection:
            rows = (await connection.execute(statement)).all()
        return _claimed(rows)

    async def mark_published(self, ids: Sequence[str], *, now: datetime) -> None:
        """``accepted`` -> ``published`` for ``ids`` (rows in other states are left alone)."""
        if not ids:
            return
        async with self.engine.begin() as connection:
            await self.set_published(connection, ids, now=now)

    async def set_published(self, executor: Executor, ids: Sequence[str], *, now: datetime) -> None:
        """:meth:`mark_published` in the caller's transaction (any number of ids)."""
        for start in range(0, len(ids), _MAX_IDS_PER_STATEMENT):
            await executor.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(ids[start : start + _MAX_IDS_PER_STATEMENT]),
                    _still(OutboxStatus.ACCEPTED),
                )
                .values(
                    status=OutboxStatus.PUBLISHED.value,
                    finished_at=now,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                )
            )

    async def mark_scheduled(self, sequence_numbers: dict[str, int], *, now: datetime) -> None:
        """``accepted`` -> ``scheduled`` with each row's Service Bus sequence number."""
        if not sequence_numbers:
            return
        async with self.engine.begin() as connection:
            for event_id, number in sequence_numbers.items():
                await connection.execute(
                    update(outbox)
                    .where(outbox.c.id == event_id, outbox.c.status == OutboxStatus.ACCEPTED.value)
                    .values(
                        status=OutboxStatus.SCHEDULED.value,
                        sequence_number=number,
                        finished_at=now,
                        lease_owner=None,
                        lease_until=None,
                        last_error=None,
                    )
                )

    async def mark_failed(self, event_id: str, error: str, *, now: datetime) -> None:
        """``accepted`` -> ``failed``: the event can never be sent (``error`` says why)."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == event_id, outbox.c.status == OutboxStatus.ACCEPTED.value)
                .values(
                    status=OutboxStatus.FAILED.value,
                    finished_at=now,
                    last_error=error[:_MAX_ERROR_LENGTH],
                    lease_owner=None,
                    lease_until=None,
                )
            )

    async def release(self, ids: Sequence[str], claim: str, *, error: str | None) -> None:
        """Give up ``claim``'s lease on ``ids`` (still ``accepted``) so any relay retries them."""
        if not ids:
            return
        values: dict[str, object] = {"lease_owner": None, "lease_until": None}
        if error is not None:
            values["last_error"] = error[:_MAX_ERROR_LENGTH]
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(
                    outbox.c.id.in_(ids),
                    outbox.c.lease_owner == claim,
                    _still(OutboxStatus.ACCEPTED),
                )
                .values(**values)
            )

    async def release_instance(self, instance_id: str) -> int:
        """Give up every lease of this process (claims ``<instance_id>/...``) at shutdown.

        Returns:
            Rows released.
        """
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(outbox)
                .where(
                    outbox.c.lease_owner.startswith(f"{instance_id}/", autoescape=True),
                    outbox.c.status == OutboxStatus.ACCEPTED.value,
                )
                .values(lease_owner=None, lease_until=None)
            )
        assert isinstance(result, CursorResult)
        return result.rowcount

    # --- reading, cancelling ---------------------------------------------------------------

    async def get(self, event_id: str) -> OutboxRecord | None:
        """The row for ``event_id``, or ``None`` (never accepted, or pruned)."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        outbox.c.id,
                        outbox.c.event_type,
                        outbox.c.queue,
                        outbox.c.source,
                        outbox.c.status,
                        outbox.c.accepted_at,
                        outbox.c.deliver_at,
                        outbox.c.finished_at,
                        outbox.c.sequence_number,
                        outbox.c.attempts,
                        outbox.c.last_error,
                        outbox.c.lease_until,
                        outbox.c.trace_context,
                    ).where(outbox.c.id == event_id)
                )
            ).first()
        if row is None:
            return None
        return OutboxRecord(
            id=row.id,
            event_type=row.event_type,
            queue=row.queue,
            source=row.source,
            status=OutboxStatus(row.status),
            accepted_at=row.accepted_at,
            deliver_at=row.deliver_at,
            finished_at=row.finished_at,
            sequence_number=row.sequence_number,
            attempts=row.attempts,
            last_error=row.last_error,
            lease_until=row.lease_until,
            trace_context=row.trace_context,
        )

    async def cancel_unsent(self, event_id: str, *, now: datetime) -> bool:
        """``accepted`` -> ``cancelled`` unless someone holds a live lease on it.

        Returns:
            Whether the row was cancelled (it will then never be sent).
        """
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(outbox)
                .where(
                    outbox.c.id == event_id,
                    outbox.c.status == OutboxStatus.ACCEPTED.value,
                    or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
                )
                .values(
                    status=OutboxStatus.CANCELLED.value,
                    finished_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
            )
        assert isinstance(result, CursorResult)
        return result.rowcount == 1

    async def mark_cancelled(self, event_id: str, *, now: datetime) -> None:
        """``scheduled`` -> ``cancelled`` after its scheduled message was cancelled."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(outbox)
                .where(outbox.c.id == event_id, outbox.c.status == OutboxStatus.SCHEDULED.value)
                .values(status=OutboxStatus.CANCELLED.value, finished_at=now)
            )

    async def backlog(self) -> Backlog:
        """How many rows wait to be published, and since when."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(func.count(), func.min(outbox.c.accepted_at)).where(
                        outbox.c.status == OutboxStatus.ACCEPTED.value
                    )
                )
            ).one()
        count, oldest = row
        return Backlog(count=int(count), oldest_accepted_at=oldest)

    async def ping(self) -> None:
        """Run a trivial query (raises when the database is unreachable)."""
        async with self.engine.connect() as connection:
            await connection.execute(select(1))

    async def prune(self, *, finished_before: datetime, keys_before: datetime) -> tuple[int, int]:
        """Delete old finished rows and old idempotency keys.

        Deleted: ``published``, ``cancelled`` and ``failed`` rows finished before
        ``finished_before``; ``scheduled`` rows whose enqueue time is before it (they can no
        longer be cancelled); idempotency keys created before ``keys_before``.

        Returns:
            ``(outbox rows, idempotency keys)`` deleted.
        """
        done = (
            OutboxStatus.PUBLISHED.value,
            OutboxStatus.CANCELLED.value,
            OutboxStatus.FAILED.value,
        )
        async with self.engine.begin() as connection:
            rows = await connection.execute(
                delete(outbox).where(
                    or_(
                        and_(outbox.c.status.in_(done), outbox.c.finished_at < finished_before),
                        and_(
                            outbox.c.status == OutboxStatus.SCHEDULED.value,
                            outbox.c.deliver_at < finished_before,
                        ),
                    )
                )
            )
            keys = await connection.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < keys_before)
            )
        assert isinstance(rows, CursorResult)
        assert isinstance(keys, CursorResult)
        return rows.rowcount, keys.rowcount
