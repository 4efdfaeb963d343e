"""Per-entity settings and the dead-letter reasons the entity itself assigns.

Source: https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_DELIVERY_COUNT_EXCEEDED", "TTL_EXPIRED", "EntitySettings"]

#: ``DeadLetterReason`` for messages that reached ``MaxDeliveryCount``.
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
#: ``DeadLetterReason`` for messages whose time to live passed (with
#: ``DeadLetteringOnMessageExpiration``).
TTL_EXPIRED = "TTLExpiredException"


@dataclass(frozen=True, slots=True)
class EntitySettings:
    """Per-entity behaviour. Durations are seconds.

    Attributes:
        lock_duration: How long a peek-lock (or session lock) lasts (``LockDuration``).
        max_delivery_count: Failed deliveries before dead-lettering; ``None`` for never
            (dead-letter queues).
        default_ttl: ``DefaultMessageTimeToLive``; ``None`` for never.
        duplicate_detection_window: Seconds of message-id history, or ``None`` when
            ``RequiresDuplicateDetection`` is off.
        requires_session: ``RequiresSession``.
        dead_lettering_on_expiration: ``DeadLetteringOnMessageExpiration``.
        max_message_size: Largest accepted encoded message, bytes
            (``MaxMessageSizeInKilobytes``; 256 KiB as on the Standard tier).
    """

    lock_duration: float = 60.0
    max_delivery_count: int | None = 10
    default_ttl: float | None = None
    duplicate_detection_window: float | None = None
    requires_session: bool = False
    dead_lettering_on_expiration: bool = False
    max_message_size: int = 256 * 1024
