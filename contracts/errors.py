"""Why a message can never be processed, in dead-letter terms."""

from enum import StrEnum


class DeadLetterReason(StrEnum):
    """Values written to the ``DeadLetterReason`` property of a dead-lettered message.

    Service Bus leaves the reason free-form (max 4,096 characters); these are the ones this
    project writes. See
    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
    """

    INVALID_JSON = "InvalidJson"
    UNSUPPORTED_CONTENT_TYPE = "UnsupportedContentType"
    UNKNOWN_EVENT_TYPE = "UnknownEventType"
    UNSUPPORTED_SCHEMA_VERSION = "UnsupportedSchemaVersion"
    SCHEMA_VALIDATION_FAILED = "SchemaValidationFailed"
    WRONG_QUEUE = "WrongQueue"
    RECIPIENT_REJECTED = "RecipientRejected"
    MAX_RETRIES_EXCEEDED = "MaxRetriesExceeded"


class ContractViolation(ValueError):
    """A message body that does not satisfy the contracts; retrying cannot help.

    Attributes:
        reason: The dead-letter reason to record.
        description: A one-line, human-readable account naming the offending field or value.
    """

    def __init__(self, reason: DeadLetterReason, description: str) -> None:
        super().__init__(f"{reason.value}: {description}")
        self.reason = reason
        self.description = description


class MessageTooLarge(ValueError):
    """An event whose Service Bus message would exceed the entity's maximum message size.

    Sending it would fail with ``MessageSizeExceededError``; retrying cannot help. The
    limit covers the body and all properties: 256 KB on the Standard tier, up to 100 MB on
    Premium (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas).

    Attributes:
        event_id: Id of the event (and message).
        size: Encoded size of the message, in bytes.
        limit: The limit it exceeds, in bytes.
    """

    def __init__(self, event_id: str, size: int, limit: int) -> None:
        super().__init__(
            f"event {event_id}: the Service Bus message is {size} bytes encoded, "
            f"over the {limit}-byte limit"
        )
        self.event_id = event_id
        self.size = size
        self.limit = limit
