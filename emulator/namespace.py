"""The set of entities the emulator serves, built from the configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from emulator.addressing import Address
from emulator.config import EmulatorConfig, QueueConfig
from emulator.entity import Entity, EntitySettings, Journal
from emulator.errors import EntityNotFoundError
from emulator.model import SessionInfo

__all__ = ["Namespace"]


def _queue_settings(queue: QueueConfig) -> EntitySettings:
    props = queue.properties
    return EntitySettings(
        lock_duration=props.lock_duration.total_seconds(),
        max_delivery_count=props.max_delivery_count,
        default_ttl=(
            None
            if props.time_to_live_is_infinite
            else props.default_message_time_to_live.total_seconds()
        ),
        duplicate_detection_window=(
            props.duplicate_detection_history_time_window.total_seconds()
            if props.requires_duplicate_detection
            else None
        ),
        requires_session=props.requires_session,
        dead_lettering_on_expiration=props.dead_lettering_on_message_expiration,
        max_message_size=props.max_message_size_in_kilobytes * 1024,
    )


def _dead_letter_settings(queue: EntitySettings) -> EntitySettings:
    # A dead-letter queue has no MaxDeliveryCount, no TTL, no duplicate detection, and is
    # not session-enabled even when its queue is.
    return EntitySettings(
        lock_duration=queue.lock_duration,
        max_delivery_count=None,
        max_message_size=queue.max_message_size,
    )


class Namespace:
    """Queues by (case-insensitive) name, each with its dead-letter sub-queue.

    Args:
        config: Validated configuration.
        on_available: Called with an entity whenever messages may have become available in it.
        on_session_lost: Called when a session lock expired (entity, session, former owner).
    """

    def __init__(
        self,
        config: EmulatorConfig,
        on_available: Callable[[Entity], None] | None = None,
        on_session_lost: Callable[[Entity, SessionInfo, object], None] | None = None,
    ) -> None:
        self._entities: dict[str, Entity] = {}
        for queue in config.queues:
            settings = _queue_settings(queue)
            dead_letter = Entity(
                f"{queue.name}/$DeadLetterQueue",
                _dead_letter_settings(settings),
                is_dead_letter_queue=True,
            )
            main = Entity(queue.name, settings, dead_letter_queue=dead_letter)
            self._entities[main.key] = main
            self._entities[dead_letter.key] = dead_letter
        for entity in self._entities.values():
            entity.on_available = on_available
            entity.on_session_lost = on_session_lost

    def __iter__(self) -> Iterator[Entity]:
        return iter(self._entities.values())

    def attach_journal(self, journal: Journal) -> None:
        """Report every later durable change of every entity to ``journal``."""
        for entity in self._entities.values():
            entity.journal = journal

    def get(self, key: str) -> Entity | None:
        """The entity with the lower-cased path ``key``, if configured."""
        return self._entities.get(key)

    def entity(self, address: Address) -> Entity:
        """The entity an address names (the queue or its dead-letter queue).

        Raises:
            EntityNotFoundError: no such queue.
        """
        entity = self._entities.get(address.entity_path)
        if entity is None:
            raise EntityNotFoundError(
                f"The messaging entity '{address.entity_path or '(none)'}' could not be found."
            )
        return entity

    def next_deadline(self) -> float | None:
        """The earliest timer deadline over all entities (seconds since the epoch)."""
        deadlines = [d for d in (e.next_deadline() for e in self._entities.values()) if d]
        return min(deadlines) if deadlines else None

    def process_due(self, now: float) -> None:
        """Run due timers (lock expiry, scheduled messages, TTL) of every entity."""
        for entity in self._entities.values():
            entity.process_due(now)
