"""Deleting finished outbox rows and expired idempotency keys, periodically."""

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from producer.outbox.repository import OutboxRepository

logger = logging.getLogger(__name__)


class Pruner:
    """Deletes rows past their retention every ``interval``.

    Args:
        repository: The outbox.
        retention: How long finished rows (published, cancelled, failed; scheduled ones
            counted from their enqueue time) are kept.
        idempotency_retention: How long ``Idempotency-Key`` records are kept.
        interval: Time between two prunes (the first runs right after start).
    """

    def __init__(
        self,
        repository: OutboxRepository,
        *,
        retention: timedelta,
        idempotency_retention: timedelta,
        interval: timedelta,
    ) -> None:
        self._repository = repository
        self._retention = retention
        self._idempotency_retention = idempotency_retention
        self._interval = interval.total_seconds()
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        """Make :meth:`run` return."""
        self._stopping.set()

    async def prune_once(self) -> tuple[int, int]:
        """Delete what is past retention now.

        Returns:
            ``(outbox rows, idempotency keys)`` deleted.
        """
        now = datetime.now(UTC)
        rows, keys = await self._repository.prune(
            finished_before=now - self._retention,
            keys_before=now - self._idempotency_retention,
        )
        if rows or keys:
            logger.info("pruned %d outbox rows and %d idempotency keys", rows, keys)
        return rows, keys

    async def run(self) -> None:
        """Prune until :meth:`request_stop`; errors are logged and retried next interval."""
        while not self._stopping.is_set():
            try:
                await self.prune_once()
            except Exception as exc:
                logger.warning("pruning the outbox failed: %r", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
