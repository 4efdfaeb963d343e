"""Notification delivery with at-most-once effect per event id (see ``stores.deliveries``).

:class:`NotificationHandler` wraps a channel sender (e-mail, webhook, or the ``log``
sender used for local runs): it honours ``deliver_at``, claims the event, sends, and
records the outcome; a duplicate delivery of a delivered event does nothing.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.errors import DeliverLater, PermanentError, TransientError
from consumer.retry import describe
from consumer.stores.deliveries import Claim, DeliveryStore
from contracts import EventEnvelope, NotificationEnvelope

logger = logging.getLogger(__name__)

Sender = Callable[[NotificationEnvelope], Awaitable[None]]
"""Performs the delivery; raises ``PermanentError`` / ``TransientError`` (or anything)."""

EARLY_TOLERANCE = timedelta(seconds=1)
"""A notification received this much before its ``deliver_at`` is delivered anyway."""


class DeliveryLog:
    """Appends one JSON line per delivered notification to ``path``.

    Each line: ``{"event_id", "channel", "recipient", "subject", "priority",
    "accepted_at", "delivered_at"}`` with ISO-8601 UTC timestamps.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = asyncio.Lock()

    async def append(self, envelope: NotificationEnvelope, delivered_at: datetime) -> None:
        data = envelope.data
        line = json.dumps(
            {
                "event_id": envelope.id,
                "channel": data.channel.value,
                "recipient": data.recipient,
                "subject": data.subject,
                "priority": data.priority.value,
                "accepted_at": envelope.time.isoformat(),
                "delivered_at": delivered_at.isoformat(),
            }
        )
        async with self._lock:
            await asyncio.to_thread(self._write, line)  # file I/O off the event loop

    def _write(self, line: str) -> None:
        with self._path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")


async def log_only(envelope: NotificationEnvelope) -> None:
    """The ``log`` delivery mode's sender: nothing leaves the process."""
    logger.debug("delivery mode log: %s to %s", envelope.id, envelope.data.recipient)


class NotificationHandler:
    """Delivers a notification through ``send`` at most once per event id.

    Args:
        name: Label (``email``, ``webhook``).
        send: The channel sender.
        store: Delivery records (the idempotency inbox of notifications).
        log: Optional JSON-lines delivery log.
    """

    def __init__(
        self, name: str, send: Sender, store: DeliveryStore, log: DeliveryLog | None = None
    ) -> None:
        self.name = name
        self._send = send
        self._store = store
        self._log = log

    async def __call__(self, envelope: EventEnvelope) -> bool:
        """Returns ``False`` when the event was already delivered.

        Raises:
            DeliverLater: ``deliver_at`` is still ahead.
            TransientError: another delivery of this event is in progress, or the
                channel failed transiently.
            PermanentError: the channel refused the notification for good.
        """
        assert isinstance(envelope, NotificationEnvelope)
        deliver_at = getattr(envelope.data, "deliver_at", None)
        if deliver_at is not None and deliver_at - datetime.now(UTC) > EARLY_TOLERANCE:
            raise DeliverLater(deliver_at)
        claim = await self._store.claim(envelope)
        if claim is Claim.ALREADY_DELIVERED:
            logger.info("notification %s already delivered; skipped", envelope.id)
            return False
        if claim is Claim.IN_PROGRESS:
            raise TransientError(f"delivery of {envelope.id} is in progress elsewhere")
        try:
            await self._send(envelope)
        except PermanentError as exc:
            await self._store.mark_rejected(envelope.id, f"{exc.reason}: {exc.description}")
            raise
        except Exception as exc:
            await self._store.mark_failed(envelope.id, describe(exc))
            raise
        # A cancellation (shutdown past the grace period) keeps the claim: the message may
        # have gone out, so a redelivery waits for the lease before sending again.
        await self._store.mark_delivered(envelope.id)
        if self._log is not None:
            await self._log.append(envelope, datetime.now(UTC))
        return True
