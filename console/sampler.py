"""The flow over time: a sample every ``CONSOLE_SAMPLE_INTERVAL``, kept for
``CONSOLE_HISTORY``, from which the flow page draws its charts.

One background task (started in the app's lifespan) takes the samples, so however many
browsers poll the page, Service Bus, the outbox and the consumer are each read once per
interval. The consumer's ``/status`` counters are totals since it started; the outcomes
per interval are the differences between two samples (a counter that went down means the
consumer restarted, and its new total is the interval's count).
"""

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from console.sources.bus import BusReader, QueueCounts
from console.sources.consumer_status import ConsumerStatus
from console.sources.outbox import OutboxReader

logger = logging.getLogger(__name__)

OUTCOMES = ("completed", "dead_lettered", "retried")
"""Consumer outcomes drawn per queue."""


@dataclass(frozen=True)
class Sample:
    """One look at the system.

    Attributes:
        at: When it was taken (aware UTC).
        backlog: Outbox rows waiting to be published (``None``: outbox not read).
        oldest_pending_seconds: Age of the oldest of them, seconds.
        queues: Peeked counts per queue.
        outcomes: Consumer totals per queue and outcome (:data:`OUTCOMES`) since it started.
        problems: What could not be read, one line each.
    """

    at: datetime
    backlog: int | None = None
    oldest_pending_seconds: float | None = None
    queues: dict[str, QueueCounts] = field(default_factory=dict)
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def outcome_totals(status: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per queue, the consumer's ``/status`` counters as :data:`OUTCOMES` totals."""
    totals: dict[str, dict[str, int]] = {}
    for queue, counters in (status.get("queues") or {}).items():
        if not isinstance(counters, dict):
            continue
        dead = counters.get("dead_lettered") or {}
        totals[str(queue)] = {
            "completed": int(counters.get("completed", 0)),
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
        status: The consumer's ``/status``, if configured.
        interval: Seconds between samples.
        keep: Most samples kept (the history).
    """

    def __init__(
        self,
        queues: tuple[str, ...],
        bus: BusReader,
        outbox: OutboxReader | None,
        status: ConsumerStatus | None,
        interval: float,
        keep: int,
    ) -> None:
        self.queues = queues
        self.interval = interval
        self._bus = bus
        self._outbox = outbox
        self._status = status
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
                problems.append(f"outbox: {_line(error)}")
        queues: dict[str, QueueCounts] = {}
        for queue in self.queues:
            try:
                queues[queue] = await self._bus.counts(queue)
            except Exception as error:
                problems.append(f"queue {queue}: {_line(error)}")
        outcomes: dict[str, dict[str, int]] = {}
        if self._status is not None:
            try:
                outcomes = outcome_totals(await self._status.fetch())
            except Exception as error:
                problems.append(f"consumer status: {_line(error)}")
        sample = Sample(now, backlog, oldest, queues, outcomes, problems)
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


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
