"""The values of DLQ operations: one dead-lettered message, an operation's outcome, errors."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

from consumer.messages import text_properties

Progress = Callable[[int], None]
"""Called with the number of selected messages just handled (for progress bars)."""
Selected = Callable[[int], None]
"""Called once with the number of selected messages, before any is handled."""


@dataclass(frozen=True)
class DeadLetteredMessage:
    """One dead-lettered message (a peeked or received copy from ``<queue>/$DeadLetterQueue``).

    Not to be confused with :class:`consumer.retry.DeadLetter`, the consumer's decision to
    dead-letter a message.

    Attributes:
        sequence_number: Its sequence number in the DLQ.
        message_id: The message id.
        reason: ``DeadLetterReason``.
        description: ``DeadLetterErrorDescription``.
        delivery_count: Deliveries before (and in) the DLQ.
        enqueued_time: When it was enqueued (aware UTC).
        event_type: ``eventType`` property or subject, if any.
        body: The body bytes.
        content_type: The content type.
        properties: Application properties (``str`` keys).
    """

    sequence_number: int
    message_id: str | None
    reason: str | None
    description: str | None
    delivery_count: int | None
    enqueued_time: datetime | None
    event_type: str | None
    body: bytes = field(repr=False)
    content_type: str | None = None
    properties: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self, *, with_body: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "sequence_number": self.sequence_number,
            "message_id": self.message_id,
            "reason": self.reason,
            "description": self.description,
            "delivery_count": self.delivery_count,
            "enqueued_time": self.enqueued_time.isoformat() if self.enqueued_time else None,
            "event_type": self.event_type,
        }
        if with_body:
            data["content_type"] = self.content_type
            data["properties"] = {k: _jsonable(v) for k, v in self.properties.items()}
            data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass
class Outcome:
    """What a replay or purge did (or, dry run, would do).

    Attributes:
        matched: The selected dead letters, from the snapshot, in sequence order.
        replayed: DLQ sequence number -> message id of the copy sent to the main queue.
        purged: Dead letters deleted.
        failed: DLQ sequence number -> why it was not replayed or purged (or, replay, why
            it is still in the DLQ although its copy was sent).
        missing: Selected sequence numbers no longer in the DLQ when received (settled
            meanwhile by someone else, or locked by another receiver).
    """

    matched: list[DeadLetteredMessage] = field(default_factory=list)
    replayed: dict[int, str] = field(default_factory=dict)
    purged: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


class DlqError(Exception):
    """A problem to report to the user in one line (unknown queue, no access, ...).

    Attributes:
        outcome: What a replay or purge did before the problem stopped it (``None`` when
            the problem came before it started).
    """

    def __init__(self, message: str, *, outcome: Outcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


def describe_message(message: ServiceBusReceivedMessage) -> DeadLetteredMessage:
    """A :class:`DeadLetteredMessage` view of a received or peeked DLQ message."""
    properties = text_properties(message)
    event_type = properties.get("eventType") or message.subject
    enqueued = message.enqueued_time_utc
    return DeadLetteredMessage(
        sequence_number=int(message.sequence_number or 0),
        message_id=str(message.message_id) if message.message_id is not None else None,
        reason=message.dead_letter_reason,
        description=message.dead_letter_error_description,
        delivery_count=message.delivery_count,
        enqueued_time=enqueued.astimezone(UTC) if enqueued else None,
        event_type=str(event_type) if event_type else None,
        body=_body(message),
        content_type=message.content_type,
        properties=properties,
    )


def _body(message: ServiceBusReceivedMessage) -> bytes:
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    body = message.body
    if isinstance(body, bytes):
        return body
    return json.dumps(body, default=str).encode() if not isinstance(body, str) else body.encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
