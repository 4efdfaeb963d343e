"""Notification delivery with at-most-once effect per event id (see ``stores.deliveries``).

:class:`NotificationHandler` wraps a channel sender (e-mail or webhook; in the ``log``
delivery mode the same senders render and validate everything and stop before the
network): it honours ``deliver_at``, claims the event, sends within the attempt timeout,
records the outcome, and appends the delivery to the delivery log; a duplicate delivery of
a delivered event does nothing.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from consumer.errors import DeliverLater, PermanentError, TransientError
from consumer.handlers.delivery_log import DeliveryLog
from consumer.retry import describe
from consumer.stores.deliveries import Claim, DeliveredRecord, DeliveryStore
from contracts import EventEnvelope, NotificationEnvelope

logger = logging.getLogger(__name__)

Sender = Callable[[NotificationEnvelope], Awaitable[None]]
"""Performs the delivery; raises ``PermanentError`` / ``TransientError`` (or anything)."""

EARLY_TOLERANCE = timedelta(seconds=1)
"""A notification received this much before its ``deliver_at`` is delivered anyway."""

__all__ = ["EARLY_TOLERANCE", "DeliveryLog", "NotificationHandler", "Sender"]


class NotificationHandler:
    """Delivers a notification through ``send`` at most once per event id.

    Args:
        name: Label (``email``, ``webhook``).
        send: The channel sender.
        store: Delivery records (the idempotency inbox of notifications).
        log: Optional JSON-lines delivery log.
        attempt_timeout: Seconds one attempt (rendering and sending) may take; past it the
            attempt is cancelled and fails transiently. Keep it below the store's claim
            lease, which is what holds off other deliveries while an attempt runs.
    """

    def __init__(
        self,
        name: str,
        send: Sender,
        store: DeliveryStore,
        log: DeliveryLog | None = None,
        *,
        attempt_timeout: float | None = None,
    ) -> None:
        self.name = name
        self._send = send
        self._store = store
        self._log = log
        self._attempt_timeout = attempt_timeout

    async def __call__(self, envelope: EventEnvelope) -> bool:
        """Returns ``False`` when the event was already delivered.

        Raises:
            DeliverLater: ``deliver_at`` is still ahead.
            TransientError: another delivery of this event is in progress, the attempt
                timed out, or the channel failed transiently.
            PermanentError: the channel refused the notification for good (or its
                template is missing or fails to render).
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
        await self._attempt(envelope)
        delivered_at = await self._store.mark_delivered(envelope.id)
        if self._log is not None:
            await self._log.record(_record(envelope, delivered_at))
        return True

    async def _attempt(self, envelope: NotificationEnvelope) -> None:
        """Send, recording a failure; the claim is held on entry."""
        deadline = asyncio.timeout(self._attempt_timeout)
        try:
            async with deadline:
                await self._send(envelope)
        except PermanentError as exc:
            await self._store.mark_rejected(envelope.id, f"{exc.reason}: {exc.description}")
            raise
        except TimeoutError as exc:
            if not deadline.expired():
                await self._store.mark_failed(envelope.id, describe(exc))
                raise
            error = TransientError(
                f"{self.name} delivery attempt took over {self._attempt_timeout} s"
            )
            await self._store.mark_failed(envelope.id, str(error))
            raise error from exc
        except Exception as exc:
            await self._store.mark_failed(envelope.id, describe(exc))
            raise
        except BaseException:
            # Cancelled (processing deadline, shutdown past the grace period): the message
            # may have gone out, so the claim stays; other processes wait for its lease.
            self._store.abandon(envelope.id)
            raise


def _record(envelope: NotificationEnvelope, delivered_at: datetime) -> DeliveredRecord:
    """What the store holds for a delivered ``envelope`` (no read back needed)."""
    data = envelope.data
    return DeliveredRecord(
        event_id=envelope.id,
        channel=data.channel.value,
        recipient=data.recipient,
        subject=data.subject,
        priority=data.priority.value,
        template=data.template,
        accepted_at=envelope.time,
        delivered_at=delivered_at,
    )
