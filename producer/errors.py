"""Errors the producer's library API raises; the HTTP API maps each to a problem status."""


class ProducerError(Exception):
    """Base class of the producer's own errors."""


class OutboxUnavailableError(ProducerError):
    """The outbox database could not be written or read (HTTP 503; retry later)."""

    @classmethod
    def from_database(cls, exc: BaseException) -> "OutboxUnavailableError":
        """The error for a failing outbox database (``exc`` named in the message)."""
        return cls(f"the outbox database is unavailable: {exc!r}")


class EventTooLargeError(ProducerError):
    """An event's Service Bus message would exceed ``max_message_bytes`` (HTTP 413).

    Attributes:
        size: The event's size in bytes.
        limit: The configured limit in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the event's Service Bus message would be {size} bytes; "
            f"at most {limit} bytes are accepted"
        )
        self.size = size
        self.limit = limit


class DuplicateEventError(ProducerError):
    """An envelope with this id is already in the outbox (HTTP 409)."""


class IdempotencyConflictError(ProducerError):
    """The ``Idempotency-Key`` was already used with a different request (HTTP 409)."""


class EventNotFoundError(ProducerError):
    """No event (of the expected kind) with this id is known, or it was pruned (HTTP 404)."""


class NotCancellableError(ProducerError):
    """The notification can no longer be cancelled (HTTP 409).

    Attributes:
        status: The event's status (``published``, ``cancelled`` ...).
    """

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class CancellationPendingError(ProducerError):
    """The notification is being published right now; ask again shortly (HTTP 409)."""


class MissingQueueError(ProducerError):
    """A queue the producer sends to does not exist in the namespace (start-up refused).

    Attributes:
        queue: The queue's name.
        setting: The ``PRODUCER_*`` variable that names it.
    """

    def __init__(self, queue: str, setting: str) -> None:
        super().__init__(
            f"Service Bus queue {queue!r} ({setting}) does not exist: create it "
            f"(az servicebus queue create --namespace-name <namespace> --resource-group "
            f"<group> --name {queue}, or add it to the emulator's config file) or set "
            f"{setting} to an existing queue"
        )
        self.queue = queue
        self.setting = setting
