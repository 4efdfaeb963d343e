"""The flow over time: a sample every ``CONSOLE_SAMPLE_INTERVAL``, kept for
``CONSOLE_HISTORY``, from which the flow page draws its charts.

One background task (started in the app's lifespan) takes the samples, so however many
browsers poll the page, Service Bus, the outbox and the consumer are each read once per
interval.

Consumer outcomes come from one of two places:

* the consumer's database (``CONSOLE_AUDIT_STORE_URL``): each sample reads the
  ``consumer_outcomes`` minutes of the history window (:class:`OutcomeMinutes`), which
  every consumer replica adds to (:mod:`consumer.stores.outcomes`). Charted as they are,
  per minute, rather than as differences between samples: the rows are already counts
  per minute summed over the replicas, so they stay right when KEDA adds or removes
  replicas, when a consumer restarts, and when the console restarts (its history is in
  the table, not in this process);
* else the consumer's ``/status`` (``CONSOLE_CONSUMER_STATUS_URL``, one process, reachable
  only where the consumer has ingress): totals since that process started; the outcomes
  per interval are the differences between two samples (a counter that went down means
  the consumer restarted, and its new total is the interval's count).
"""

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from common.error_text import error_line
from console.sources.bus import BusReader, QueueCounts
from console.sources.consumer_status import ConsumerStatus
from console.sources.consumer_store import ConsumerStore
from console.sources.outbox import OutboxReader
from consumer.stores.outcomes import OUTCOMES, OutcomeCount, minute_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutcomeMinutes:
    """Consumer outcomes per UTC minute, every replica summed, from the consumer's database.

    Attributes:
        minutes: Start of each minute (aware UTC), oldest first; the last is the current
            minute, still counting (consumers write every
            ``CONSUMER_OUTCOME_FLUSH_INTERVAL``).
        counts: Per queue and outcome (:data:`OUTCOMES`), the count of each minute (one
            value per entry of ``minutes``); every watched queue is present.
        reasons: Per queue, dead-lettered by reason over the minutes.
    """

    minutes: list[datetime]
    counts: dict[str, dict[str, list[int]]]
    reasons: dict[str, dict[str, int]]

    @classmethod
    def from_rows(
        cls, rows: Sequence[OutcomeCount], queues: Sequence[str], minutes: list[datetime]
    ) -> "OutcomeMinutes":
        """Lay ``rows`` out over ``minutes`` (rows outside them are left out); queues not
        in ``queues`` (other sources sharing the database) are left out."""
        index = {minute: i for i, minute in enumerate(minutes)}
        counts = {q: {o: [0] * len(minutes) for o in OUTCOMES} for q in queues}
        reasons: dict[str, dict[str, int]] = {q: {} for q in queues}
        for row in rows:
            at = index.get(row.minute)
            if at is None or row.queue not in counts or row.outcome not in OUTCOMES:
                continue
            counts[row.queue][row.outcome][at] += row.count
            if row.outcome == "dead_lettered":
                by_reason = reasons[row.queue]
                by_reason[row.reason] = by_reason.get(row.reason, 0) + row.count
        return cls(minutes, counts, reasons)


def window_minutes(now: datetime, history: timedelta) -> list[datetime]:
    """The minutes charted: the current one and those before it, ``history`` in all
    (rounded up to whole minutes, at least one), oldest first."""
    count = max(1, math.ceil(history.total_seconds() / 60))
    last = minute_of(now)
    return [last - timedelta(minutes=count - 1 - i) for i in range(count)]


@dataclass(frozen=True)
class Sample:
    """One look at the system.

    Attributes:
        at: When it was taken (aware UTC).
        backlog: Outbox rows waiting to be published (``None``: outbox not read).
        oldest_pending_seconds: Age of the oldest of them, seconds.
        queues: Peeked counts per queue.
        outcomes: Consumer totals per queue and outcome (:data:`OUTCOMES`) since it started
            (from ``/status``; empty when read from the database or not configured).
        minutes: Consumer outcomes per minute from its database (``None``: not configured
            or unreadable).
        problems: What could not be read, one line each.
    """

    at: datetime
    backlog: int | None = None
    oldest_pending_seconds: float | None = None
    queues: dict[str, QueueCounts] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    minutes: OutcomeMinutes | None = None
    problems: list[str] = field(default_factory=list)


def outcome_totals(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per queue, the consumer's ``/status`` counters as :data:`OUTCOMES` totals."""
    totals: dict[str, dict[str, int]] = {}
    for queue, counters in (status.get("queues") or {}).items():
        if not isinstance(counters, dict):
            continue
        dead = counters.get("dead_lettered") or {}
        totals[str(queue)] = {
            # A delayed retry completes the original too; count it once, as a retry.
            "completed": max(
                int(counters.get("completed", 0)) - int(counters.get("retries_scheduled", 0)), 0
            ),
            "dead_lettered": sum(int(n) for n in dead.values()) if isinstance(dead, dict) else 0,
            "retried": int(counters.get("retries_scheduled", 0))
            + int(counters.get("immediate_retries", 0)),
        }
    return totals


def per_interval(samples: list[Sample], queue: str, outcome: str) -> list[int]:
    """How many ``outcome``s the consumer had on ``queue`` between consecutive samples."""
    values: list[int] = []
    for before, after in pairwise(samples):
        if queue not in after.outcomes:
            values.append(0)
            continue
        now = after.outcomes[queue].get(outcome, 0)
        then = before.outcomes.get(queue, {}).get(outcome, 0)
        values.append(now - then if now >= then else now)
    return values


class FlowSampler:
    """Takes and keeps the samples.

    Args:
        queues: The queues to count.
        bus: Peeks Service Bus.
        outbox: The outbox, if configured.
        store: The consumer's database, if configured: outcomes per minute.
        status: The consumer's ``/status``, if configured: outcomes when ``store`` is not
            (or cannot be read).
        interval: Seconds between samples.
        history: How far back the charts go.
    """

    def __init__(
        self,
        queues: tuple[str, ...],
        bus: BusReader,
        outbox: OutboxReader | None,
        store: ConsumerStore | None,
        status: ConsumerStatus | None,
        interval: float,
        history: timedelta,
    ) -> None:
        self.queues = queues
        self.interval = interval
        self.history = history
        self._bus = bus
        self._outbox = outbox
        self._store = store
        self._status = status
        keep = int(history.total_seconds() // interval) + 1
        self.samples: deque[Sample] = deque(maxlen=max(keep, 2))
        self.sampled = asyncio.Event()

    async def sample(self) -> Sample:
        """Take one sample now and keep it."""
        now = datetime.now(UTC)
        problems: list[str] = []
        backlog = oldest = None
        if self._outbox is not None:
            try:
                pending = await self._outbox.backlog()
                backlog = pending.count
                if pending.oldest_accepted_at is not None:
                    oldest = max((now - pending.oldest_accepted_at).total_seconds(), 0.0)
            except Exception as error:
                problems.append(f"outbox: {error_line(error)}")
        queues: dict[str, QueueCounts] = {}
        for queue in self.queues:
            try:
                queues[queue] = await self._bus.counts(queue)
            except Exception as error:
                problems.append(f"queue {queue}: {error_line(error)}")
        minutes = None
        if self._store is not None:
            window = window_minutes(now, self.history)
            try:
                rows = await self._store.outcomes_since(window[0])
            except Exception as error:
                problems.append(f"consumer outcomes: {error_line(error)}")
            else:
                minutes = OutcomeMinutes.from_rows(rows, self.queues, window)
        outcomes: dict[str, dict[str, int]] = {}
        if minutes is None and self._status is not None:
            try:
                outcomes = outcome_totals(await self._status.fetch())
            except Exception as error:
                problems.append(f"consumer status: {error_line(error)}")
        sample = Sample(now, backlog, oldest, queues, outcomes, minutes, problems)
        self.samples.append(sample)
        self.sampled.set()
        return sample

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.sample()
            except Exception:  # never let one bad sample end the charts
                logger.exception("flow sample failed")
            await asyncio.sleep(self.interval)

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None
