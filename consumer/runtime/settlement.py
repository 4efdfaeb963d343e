"""What happens to a message (:data:`Outcome`), and the settlement calls behind it.

Used by the ``Settle`` stage (:mod:`consumer.runtime.pipeline`). Settlement calls never
raise. A settlement that fails
because the message is already settled or its lock is gone is logged and counted, never
fatal: the message comes back and the handlers are idempotent on the event id. See
https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement
"""

import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    ServiceBusError,
)
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from consumer.messages import DEAD_LETTER_PROPERTIES, copy_for_resend
from consumer.retry import RETRY_PROPERTIES, DeadLetter, Decision, Schedule, describe, fallback
from consumer.runtime.channel import SenderChannel
from consumer.runtime.stats import QueueStats
from contracts import DeadLetterReason

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Complete:
    """The handler succeeded (or skipped a duplicate event id): complete the message."""

    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class LockLost:
    """The lock is gone: leave the message alone, Service Bus delivers it again."""


Outcome = Complete | Decision | LockLost
"""What happens to the message: ``Complete``, a retry ``Decision`` or ``LockLost``."""

COMPLETE = Complete()
DUPLICATE = Complete(duplicate=True)
LOCK_LOST = LockLost()


async def settled(
    settlement: Awaitable[None], message: ServiceBusReceivedMessage, stats: QueueStats
) -> bool:
    """Await a settlement call; True when it succeeded. Failures are counted, not raised.

    Args:
        settlement: The channel's ``complete``/``abandon``/``dead_letter`` call.
        message: The message being settled (for logs).
        stats: ``locks_lost`` and ``settlement_failures`` are counted here.
    """
    try:
        await settlement
    except MessageAlreadySettled:
        logger.info("message %s was already settled", message.message_id)
    except MessageLockLostError as exc:
        stats.locks_lost += 1
        logger.warning("lock lost on message %s before settling", message.message_id)
        _on_process_span(exc)
    except (ServiceBusError, ValueError, RuntimeError) as exc:
        stats.settlement_failures += 1
        logger.warning("settling message %s failed: %r", message.message_id, exc)
        _on_process_span(exc)
    else:
        return True
    return False


def _on_process_span(exc: BaseException) -> None:
    """Record a failed settlement on the current (process) span: the SDK's own settlement
    span is left out inside it (:mod:`common.sdk_spans`)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"settlement failed: {type(exc).__name__}"))


def copy_for_retry(
    message: ServiceBusReceivedMessage, message_id: str, properties: Mapping[str, Any]
) -> ServiceBusMessage:
    """A new message with the original's body and properties, a new id and ``properties``.

    The retry ladder's and dead-letter properties of the original are dropped first
    (``consumer.retry.RETRY_PROPERTIES``, ``consumer.messages.DEAD_LETTER_PROPERTIES``).
    """
    if message.body_type == AmqpMessageBodyType.DATA:
        body: bytes | str = b"".join(message.body)
    else:
        body = str(message.body)
    return copy_for_resend(
        message,
        message_id=message_id,
        body=body,
        drop=(*RETRY_PROPERTIES, *DEAD_LETTER_PROPERTIES),
        add=properties,
    )


async def reschedule(
    sender: SenderChannel,
    message: ServiceBusReceivedMessage,
    schedule: Schedule,
    max_delivery_count: int,
    stats: QueueStats,
    queue: str,
) -> Outcome:
    """Send the re-send ``schedule`` asks for: ``COMPLETE`` (the original may be
    completed) once it is scheduled, else the retry ladder's fallback (abandon, or
    dead-letter on the last delivery; :func:`consumer.retry.fallback`)."""
    copy = copy_for_retry(message, schedule.message_id, schedule.properties)
    try:
        sequence_number = await sender.schedule(copy, schedule.at)
    except Exception as exc:
        logger.warning("cannot schedule %s: %r", schedule.message_id, exc)
        return fallback(
            DeadLetter(
                DeadLetterReason.MAX_RETRIES_EXCEEDED.value,
                f"could not schedule a retry: {describe(exc)}"[:1024],
            ),
            message.delivery_count or 0,
            max_delivery_count,
        )
    stats.retries_scheduled += 1
    logger.info(
        "scheduled %s on %s for %s (sequence number %d)",
        schedule.message_id,
        queue,
        schedule.at.isoformat(),
        sequence_number,
    )
    return COMPLETE
