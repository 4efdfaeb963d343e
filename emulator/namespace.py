"""The set of entities the emulator serves, built from the configuration.

Entity paths are those of Azure: ``<queue>``, ``<topic>``,
``<topic>/Subscriptions/<subscription>`` and ``<queue or subscription>/$DeadLetterQueue``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#path-to-the-dead-letter-queue),
looked up case-insensitively.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from emulator.addressing import Address
from emulator.config import (
    EmulatorConfig,
    QueueConfig,
    SubscriptionConfig,
    TopicConfig,
)
from emulator.entity import Entity, EntitySettings, Journal
from emulator.entity.topic import SubscriptionRoute, Topic
from emulator.errors import EntityNotFoundError
from emulator.model import SessionInfo

__all__ = ["Namespace"]

#: Middle segment of a subscription's path.
SUBSCRIPTIONS_SEGMENT = "Subscriptions"


def _seconds_or_none(props: QueueConfig | SubscriptionConfig | TopicConfig) -> float | None:
    p = props.properties
    return None if p.time_to_live_is_infinite else p.default_message_time_to_live.total_seconds()


def _queue_settings(queue: QueueConfig) -> EntitySettings:
    props = queue.properties
    return EntitySettings(
        lock_duration=props.lock_duration.total_seconds(),
        max_delivery_count=props.max_delivery_count,
        default_ttl=_seconds_or_none(queue),
        duplicate_detection_window=(
            props.duplicate_detection_history_time_window.total_seconds()
            if props.requires_duplicate_detection
            else None
        ),
        requires_session=props.requires_session,
        dead_lettering_on_expiration=props.dead_lettering_on_message_expiration,
        max_message_size=props.max_message_size_in_kilobytes * 1024,
    )


def _topic_settings(topic: TopicConfig) -> EntitySettings:
    props = topic.properties
    return EntitySettings(
        max_delivery_count=None,
        default_ttl=_seconds_or_none(topic),
        duplicate_detection_window=(
            props.duplicate_detection_history_time_window.total_seconds()
            if props.requires_duplicate_detection
            else None
        ),
        max_message_size=props.max_message_size_in_kilobytes * 1024,
    )


def _subscription_settings(topic: TopicConfig, subscription: SubscriptionConfig) -> EntitySettings:
    props = subscription.properties
    return EntitySettings(
        lock_duration=props.lock_duration.total_seconds(),
        max_delivery_count=props.max_delivery_count,
        default_ttl=_seconds_or_none(subscription),
        requires_session=props.requires_session,
        dead_lettering_on_expiration=props.dead_lettering_on_message_expiration,
        max_message_size=topic.properties.max_message_size_in_kilobytes * 1024,
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
    """Queues, topics and subscriptions by (case-insensitive) path, each queue and
    subscription with its dead-letter sub-queue, auto-forwarding wired.

    Args:
        config: Validated configuration (forwarding targets are known to exist).
        on_available: Called with an entity whenever messages may have become available in it.
        on_session_lost: Called when a session lock expired (entity, session, former owner).
        clock: Seconds since the epoch; dates dead-lettered messages forwarded elsewhere.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        on_available: Callable[[Entity], None] | None = None,
        on_session_lost: Callable[[Entity, SessionInfo, object], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._entities: dict[str, Entity] = {}
        self._topics: set[str] = set()
        self._subscriptions: set[str] = set()
        forwarding: list[tuple[Entity, str | None, str | None]] = []
        for queue in config.queues:
            main = self._add_receivable(queue.name, _queue_settings(queue))
            props = queue.properties
            forwarding.append((main, props.forward_to, props.forward_dead_lettered_messages_to))
        for topic_config in config.topics:
            topic = Topic(topic_config.name, _topic_settings(topic_config))
            self._entities[topic.key] = topic
            self._topics.add(topic.key)
            for sub in topic_config.subscriptions:
                path = f"{topic_config.name}/{SUBSCRIPTIONS_SEGMENT}/{sub.name}"
                entity = self._add_receivable(path, _subscription_settings(topic_config, sub))
                self._subscriptions.update((entity.key, f"{entity.key}/$deadletterqueue"))
                sub_props = sub.properties
                topic.subscriptions.append(
                    SubscriptionRoute(
                        entity, sub.rules, sub_props.dead_lettering_on_filter_evaluation_exceptions
                    )
                )
                forwarding.append(
                    (entity, sub_props.forward_to, sub_props.forward_dead_lettered_messages_to)
                )
        for entity, forward_to, forward_dead_lettered_to in forwarding:
            if forward_to is not None:
                entity.forward_to = self._entities[forward_to.lower()]
            if forward_dead_lettered_to is not None:
                entity.forward_dead_lettered_to = self._entities[forward_dead_lettered_to.lower()]
        for entity in self._entities.values():
            entity.on_available = on_available
            entity.on_session_lost = on_session_lost
            entity.clock = clock

    def _add_receivable(self, path: str, settings: EntitySettings) -> Entity:
        dead_letter = Entity(
            f"{path}/$DeadLetterQueue", _dead_letter_settings(settings), is_dead_letter_queue=True
        )
        main = Entity(path, settings, dead_letter_queue=dead_letter)
        self._entities[main.key] = main
        self._entities[dead_letter.key] = dead_letter
        return main

    def is_topic(self, entity: Entity) -> bool:
        """Whether ``entity`` is a topic (senders only; receivers use its subscriptions)."""
        return entity.key in self._topics

    def is_subscription(self, entity: Entity) -> bool:
        """Whether ``entity`` is a subscription or a subscription's dead-letter queue."""
        return entity.key in self._subscriptions

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
        """The entity an address names (queue, topic, subscription, or a dead-letter queue).

        Raises:
            EntityNotFoundError: no such entity.
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
