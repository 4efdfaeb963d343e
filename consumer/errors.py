"""Exceptions a handler raises to say what should happen to the message.

* :class:`PermanentError` -- can never succeed: dead-letter now with its reason.
* :class:`TransientError` -- may succeed later: the retry ladder (immediate retries, then
  delayed re-sends, then ``MaxRetriesExceeded``). Any other ``Exception`` counts as
  transient too; SDK errors keep their ``retryable`` meaning.
* :class:`DeliverLater` -- not an error: the event must not be handled before a time
  (``deliver_at``); the message is re-sent as a scheduled message for that time.

Dead-letter reasons follow
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
"""

from datetime import datetime
from enum import StrEnum

from contracts import DeadLetterReason


class ConsumerDeadLetterReason(StrEnum):
    """Dead-letter reasons the consumer writes besides :class:`contracts.DeadLetterReason`."""

    UNHANDLED_EVENT_TYPE = "UnhandledEventType"
    """A valid event type with no handler configured in this consumer."""
    TEMPLATE_NOT_FOUND = "TemplateNotFound"
    TEMPLATE_RENDER_FAILED = "TemplateRenderFailed"
    """A template parameter is missing or a template raised."""
    EMAIL_REJECTED = "EmailRejected"
    """The SMTP server refused the message with a 5xx reply (other than for a recipient)."""
    WEBHOOK_URL_FORBIDDEN = "WebhookUrlForbidden"
    """Plain http, or an address in a private, loopback or link-local range."""


class PermanentError(Exception):
    """Processing can never succeed: dead-letter the message now.

    Args:
        reason: Dead-letter reason to record (``DeadLetterReason`` property).
        description: One line saying what was wrong (``DeadLetterErrorDescription``).
    """

    def __init__(self, reason: DeadLetterReason | ConsumerDeadLetterReason | str, description: str):
        super().__init__(f"{reason}: {description}")
        self.reason = str(reason)
        self.description = description


class TransientError(Exception):
    """Processing may succeed later (an outage, a timeout, a throttling answer).

    Args:
        message: What failed.
        retry_after: Seconds the downstream asked us to wait (HTTP ``Retry-After``), or
            ``None``. A delayed retry is never scheduled earlier than this.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeliverLater(Exception):
    """The event must not be handled before ``at`` (aware UTC datetime)."""

    def __init__(self, at: datetime) -> None:
        super().__init__(f"deliver at {at.isoformat()}")
        self.at = at


def is_transient(error: BaseException) -> bool:
    """True when the retry ladder applies to ``error``."""
    from contracts import ContractViolation

    return isinstance(error, Exception) and not isinstance(
        error, PermanentError | ContractViolation | DeliverLater
    )
