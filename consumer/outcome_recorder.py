"""Writes the worker's outcome counters to the consumer's database, off the message path.

The worker counts outcomes in memory (:class:`consumer.runtime.stats.WorkerStats`, totals
since start-up). Every ``CONSUMER_OUTCOME_FLUSH_INTERVAL``, and once more at shutdown,
:class:`OutcomeRecorder` adds what the totals grew by since the last successful flush to
the current UTC minute's rows (:class:`consumer.stores.outcomes.OutcomeStore`), in one
transaction. A failed flush changes nothing and keeps its counts for the next one, so an
outcome is recorded once, possibly in a later minute than it happened. (A connection lost
during the COMMIT itself leaves it unknown whether the transaction landed; then the next
flush adds those counts again. That is the one way to count twice.)
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from common.error_text import error_line
from consumer.runtime.stats import WorkerStats
from consumer.stores.outcomes import OutcomeKey, OutcomeStore, minute_of

logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0
"""Seconds between two prunes of old minutes, at most."""


def outcome_totals(stats: WorkerStats) -> Counter[OutcomeKey]:
    """The worker's outcomes so far per ``(queue, outcome, reason)``, with the meaning of
    :data:`consumer.stores.outcomes.OUTCOMES`: ``retried`` sums scheduled re-sends and
    in-process retries."""
    totals: Counter[OutcomeKey] = Counter()
    for queue, counters in stats.queues.items():
        # A delayed retry completes the original too; count it once, as a retry (as the
        # servicebus_events.consumer.outcomes metric does, consumer/telemetry.py).
        totals[(queue, "completed", "")] = counters.completed - counters.retries_scheduled
        totals[(queue, "retried", "")] = counters.retries_scheduled + counters.immediate_retries
        for reason, count in counters.dead_lettered.items():
            totals[(queue, "dead_lettered", reason)] = count
    return totals


class OutcomeRecorder:
    """Flushes ``stats`` into ``store`` periodically and at :meth:`close`.

    Args:
        stats: The worker's counters (they only grow).
        store: The ``consumer_outcomes`` table.
        interval: Seconds between flushes.
        retention: Minutes older than this are deleted, at most every
            :data:`PRUNE_INTERVAL` seconds (by every replica; deleting twice is harmless).
        clock: The time of a flush (aware UTC); its minute gets the counts.
    """

    def __init__(
        self,
        stats: WorkerStats,
        store: OutcomeStore,
        *,
        interval: float,
        retention: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._stats = stats
        self._store = store
        self._interval = interval
        self._retention = retention
        self._clock = clock
        self._recorded: Counter[OutcomeKey] = Counter()
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[object] | None = None
        self._pruned_at: float | None = None

    def pending(self) -> dict[OutcomeKey, int]:
        """Counts the table does not have yet."""
        return self._unrecorded(outcome_totals(self._stats))

    def _unrecorded(self, totals: Counter[OutcomeKey]) -> dict[OutcomeKey, int]:
        recorded = self._recorded
        return {key: n - recorded[key] for key, n in totals.items() if n != recorded[key]}

    async def flush(self) -> bool:
        """Add the :meth:`pending` counts to the current minute in one transaction.

        Returns:
            ``True`` when they were written (or there were none); ``False`` when the write
            failed, logged as one warning, and the counts are kept for the next flush.
        """
        async with self._lock:
            totals = outcome_totals(self._stats)
            pending = self._unrecorded(totals)
            if not pending:
                return True
            try:
                await self._store.add(minute_of(self._clock()), pending)
            except Exception as exc:
                logger.warning(
                    "recording %d consumer outcome(s) failed, kept for the next flush: %s",
                    sum(pending.values()),
                    error_line(exc),
                )
                return False
            self._recorded = totals
            return True

    def start(self) -> None:
        """Start flushing every ``interval`` seconds (on the running loop)."""
        self._task = asyncio.create_task(self._run(), name="outcome-recorder")

    async def close(self, within: float) -> None:
        """Stop the periodic flushes and flush what is left, giving up after ``within``
        seconds.

        A flush in progress finishes first (it is not cancelled half-way). Counts still
        unwritten then (store unreachable, or too slow) are logged as lost.
        """
        self._closing.set()
        task = self._task or asyncio.create_task(self.flush())
        done, _ = await asyncio.wait({task}, timeout=max(within, 0.0))
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and (failure := task.exception()) is not None:
            logger.error("the outcome recorder failed: %s", error_line(failure))
        if lost := self.pending():
            logger.warning(
                "%d consumer outcome(s) not recorded at exit: %s",
                sum(lost.values()),
                ", ".join(f"{q} {o}{f' ({r})' if r else ''} {n}" for (q, o, r), n in lost.items()),
            )

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._interval):
                    await self._closing.wait()
            except TimeoutError:
                pass
            closing = self._closing.is_set()
            await self.flush()
            if closing:
                return
            await self._prune_now_and_then()

    async def _prune_now_and_then(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        try:
            removed = await self._store.prune(minute_of(self._clock() - self._retention))
        except Exception as exc:
            logger.warning("pruning consumer outcomes failed: %s", error_line(exc))
        else:
            if removed:
                logger.info("pruned %d consumer outcome row(s)", removed)
