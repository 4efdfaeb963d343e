"""The set of entities the emulator serves: built from the configuration, changed at run
time by the administration API (:mod:`emulator.admin`).

(Over 500 lines: building and changing the entity graph share its private indexes.)

Entity paths are those of Azure: ``<queue>``, ``<topic>``,
``<topic>/Subscriptions/<subscription>`` and ``<queue or subscription>/$DeadLetterQueue``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#path-to-the-dead-letter-queue),
looked up case-insensitively.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from emulator.addressing import Address
from emulator.config import (
    EmulatorConfig,
    QueueConfig,
    SubscriptionConfig,
    TopicConfig,
)
from emulator.entity import Entity, EntitySettings, Journal
from emulator.entity.topic import SubscriptionRoute, Topic
from emulator.errors import (
    ArgumentError,
    EmulatorError,
    EntityNotFoundError,
    InvalidOperationError,
)
from emulator.model import SessionInfo
from emulator.rules import Rule

__all__ = ["EntityExistsError", "EntityKind", "EntityRecord", "Namespace", "subscription_path"]

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


def subscription_path(topic: str, subscription: str) -> str:
    """``<topic>/Subscriptions/<subscription>``, the path Azure gives a subscription."""
    return f"{topic}/{SUBSCRIPTIONS_SEGMENT}/{subscription}"


class EntityExistsError(EmulatorError):
    """An entity (or rule) with that name exists (HTTP 409, ``ResourceExistsError``)."""

    condition = "com.microsoft:entity-already-exists"
    status_code = 409


EntityKind = Literal["queue", "topic", "subscription"]


@dataclass(slots=True)
class EntityRecord:
    """How an entity was defined, and when (what the administration API reports).

    Attributes:
        kind: Queue, topic or subscription.
        path: Entity path as created (``"orders"``, ``"events/Subscriptions/audit"``).
        config: Its definition; a topic's holds no subscriptions (they have their own records).
        created_at: Seconds since the epoch.
        updated_at: Seconds since the epoch.
        rule_created_at: Subscriptions: lower-cased rule name -> creation time.
    """

    kind: EntityKind
    path: str
    config: QueueConfig | TopicConfig | SubscriptionConfig
    created_at: float
    updated_at: float
    rule_created_at: dict[str, float] = field(default_factory=dict)


class Namespace:
    """Queues, topics and subscriptions by (case-insensitive) path, each queue and
    subscription with its dead-letter sub-queue, auto-forwarding wired.

    Entities added or removed at run time (:meth:`add_queue`, :meth:`remove` ...) behave
    exactly like configured ones. Everything runs on the reactor thread.

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
        #: Definitions by lower-cased path of queues, topics and subscriptions.
        self.records: dict[str, EntityRecord] = {}
        self._on_available = on_available
        self._on_session_lost = on_session_lost
        self._clock = clock
        self._journal: Journal | None = None
        # The configuration was validated as a whole (targets may be declared later).
        self._building = True
        now = clock()
        for queue in config.queues:
            self.add_queue(queue, now)
        for topic in config.topics:
            self.add_topic(topic, now)
        self._building = False
        self._rewire_forwarding()

    # --- building ---------------------------------------------------------------------------

    def _wire(self, *entities: Entity) -> None:
        for entity in entities:
            self._entities[entity.key] = entity
            entity.on_available = self._on_available
            entity.on_session_lost = self._on_session_lost
            entity.clock = self._clock
            entity.journal = self._journal

    def _add_receivable(self, path: str, settings: EntitySettings) -> Entity:
        dead_letter = Entity(
            f"{path}/$DeadLetterQueue", _dead_letter_settings(settings), is_dead_letter_queue=True
        )
        main = Entity(path, settings, dead_letter_queue=dead_letter)
        self._wire(main, dead_letter)
        return main

    def _check_new(self, path: str) -> None:
        if path.lower() in self._entities:
            raise EntityExistsError(f"The messaging entity '{path}' already exists.")

    def _check_targets(self, props: QueueConfig | SubscriptionConfig) -> None:
        # "The destination entity must exist at the time the source entity is created."
        if self._building:
            return
        for field_name, target in (
            ("ForwardTo", props.properties.forward_to),
            ("ForwardDeadLetteredMessagesTo", props.properties.forward_dead_lettered_messages_to),
        ):
            key = (target or "").lower()
            if target and (key not in self._entities or key in self._subscriptions):
                raise ArgumentError(f"{field_name}: the entity '{target}' could not be found.")

    def _rewire_forwarding(self) -> None:
        """Point every queue and subscription at its forwarding targets; a target that no
        longer exists is skipped (messages then stay where they are)."""
        for key, record in self.records.items():
            if isinstance(record.config, TopicConfig):
                continue
            entity = self._entities[key]
            forward_to = record.config.properties.forward_to
            forward_dead = record.config.properties.forward_dead_lettered_messages_to
            entity.forward_to = self._entities.get(forward_to.lower()) if forward_to else None
            entity.forward_dead_lettered_to = (
                self._entities.get(forward_dead.lower()) if forward_dead else None
            )

    def add_queue(self, config: QueueConfig, now: float) -> Entity:
        """Create a queue (and its dead-letter queue).

        Raises:
            EntityExistsError: the path is taken.
            ArgumentError: a forwarding target does not exist.
        """
        self._check_new(config.name)
        self._check_targets(config)
        entity = self._add_receivable(config.name, _queue_settings(config))
        self.records[entity.key] = EntityRecord("queue", config.name, config, now, now)
        if not self._building:
            self._rewire_forwarding()
        return entity

    def add_topic(self, config: TopicConfig, now: float) -> Topic:
        """Create a topic with the subscriptions its ``config`` names.

        Raises:
            EntityExistsError: the path is taken.
            ArgumentError: a subscription's forwarding target does not exist.
        """
        self._check_new(config.name)
        topic = Topic(config.name, _topic_settings(config))
        self._wire(topic)
        self._topics.add(topic.key)
        bare = config.model_copy(update={"subscriptions": ()})
        self.records[topic.key] = EntityRecord("topic", config.name, bare, now, now)
        for sub in config.subscriptions:
            self.add_subscription(config.name, sub, now)
        return topic

    def add_subscription(
        self,
        topic_name: str,
        config: SubscriptionConfig,
        now: float,
        rules: Sequence[Rule] | None = None,
    ) -> Entity:
        """Create a subscription of ``topic_name`` with ``rules`` (default: those of
        ``config``, ``$Default`` if none).

        Raises:
            EntityNotFoundError: no such topic.
            EntityExistsError: the subscription exists.
            ArgumentError: a forwarding target does not exist.
        """
        topic = self.topic(topic_name)
        topic_config = self.records[topic.key].config
        assert isinstance(topic_config, TopicConfig)
        path = subscription_path(topic.name, config.name)
        self._check_new(path)
        self._check_targets(config)
        entity = self._add_receivable(path, _subscription_settings(topic_config, config))
        self._subscriptions.update((entity.key, f"{entity.key}/$deadletterqueue"))
        chosen = tuple(rules) if rules is not None else config.rules
        topic.subscriptions.append(
            SubscriptionRoute(
                entity, chosen, config.properties.dead_lettering_on_filter_evaluation_exceptions
            )
        )
        bare = config.model_copy(update={"rule_configs": ()})
        record = EntityRecord("subscription", path, bare, now, now)
        record.rule_created_at = {rule.name.lower(): now for rule in chosen}
        self.records[entity.key] = record
        if not self._building:
            self._rewire_forwarding()
        return entity

    @contextmanager
    def deferred_checks(self) -> Iterator[None]:
        """Within the block, forwarding targets need not exist yet (definitions applied as
        a whole); forwarding is wired when it ends."""
        self._building = True
        try:
            yield
        finally:
            self._building = False
            self._rewire_forwarding()

    # --- changing ---------------------------------------------------------------------------

    def _record(self, path: str, kind: EntityKind) -> EntityRecord:
        record = self.records.get(path.strip("/").lower())
        if record is None or record.kind != kind:
            raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
        return record

    @staticmethod
    def _refuse_change(old: object, new: object, name: str, kind: str) -> None:
        if old != new:
            raise InvalidOperationError(
                f"The value for the {name} property of an existing {kind} cannot be changed."
            )

    def _set_settings(self, entity: Entity, settings: EntitySettings) -> None:
        # The duplicate-detection history keeps the window it was created with until the
        # next start (the store then builds it with the new one).
        entity.settings = settings
        if entity.dead_letter_queue is not None:
            entity.dead_letter_queue.settings = _dead_letter_settings(settings)

    def update_queue(self, config: QueueConfig, now: float) -> None:
        """Replace a queue's properties.

        Raises:
            EntityNotFoundError: no such queue.
            InvalidOperationError: ``RequiresSession`` or ``RequiresDuplicateDetection``
                changed (Azure refuses both).
            ArgumentError: a forwarding target does not exist.
        """
        record = self._record(config.name, "queue")
        old = record.config.properties
        assert isinstance(old, type(config.properties))
        new = config.properties
        self._refuse_change(old.requires_session, new.requires_session, "RequiresSession", "Queue")
        self._refuse_change(
            old.requires_duplicate_detection,
            new.requires_duplicate_detection,
            "RequiresDuplicateDetection",
            "Queue",
        )
        self._check_targets(config)
        self._set_settings(self._entities[record.path.lower()], _queue_settings(config))
        record.config = config.model_copy(update={"name": record.path})
        record.updated_at = now
        self._rewire_forwarding()

    def update_topic(self, config: TopicConfig, now: float) -> None:
        """Replace a topic's properties (its subscriptions are not touched).

        Raises:
            EntityNotFoundError: no such topic.
            InvalidOperationError: ``RequiresDuplicateDetection`` changed.
        """
        record = self._record(config.name, "topic")
        old = record.config.properties
        assert isinstance(old, type(config.properties))
        self._refuse_change(
            getattr(old, "requires_duplicate_detection", False),
            config.properties.requires_duplicate_detection,
            "RequiresDuplicateDetection",
            "Topic",
        )
        bare = config.model_copy(update={"name": record.path, "subscriptions": ()})
        self._set_settings(self._entities[record.path.lower()], _topic_settings(bare))
        record.config = bare
        record.updated_at = now
        for key, sub in self.records.items():
            if sub.kind == "subscription" and key.startswith(record.path.lower() + "/"):
                assert isinstance(sub.config, SubscriptionConfig)
                self._set_settings(self._entities[key], _subscription_settings(bare, sub.config))

    def update_subscription(self, topic_name: str, config: SubscriptionConfig, now: float) -> None:
        """Replace a subscription's properties (its rules are not touched).

        Raises:
            EntityNotFoundError: no such topic or subscription.
            InvalidOperationError: ``RequiresSession`` changed.
            ArgumentError: a forwarding target does not exist.
        """
        topic = self.topic(topic_name)
        record = self._record(subscription_path(topic.name, config.name), "subscription")
        old = record.config.properties
        assert isinstance(old, type(config.properties))
        self._refuse_change(
            getattr(old, "requires_session", False),
            config.properties.requires_session,
            "RequiresSession",
            "Subscription",
        )
        self._check_targets(config)
        topic_config = self.records[topic.key].config
        assert isinstance(topic_config, TopicConfig)
        entity = self._entities[record.path.lower()]
        self._set_settings(entity, _subscription_settings(topic_config, config))
        record.config = config.model_copy(
            update={"name": record.path.rsplit("/", 1)[1], "rule_configs": ()}
        )
        record.updated_at = now
        for index, route in enumerate(topic.subscriptions):
            if route.entity is entity:
                flag = config.properties.dead_lettering_on_filter_evaluation_exceptions
                topic.subscriptions[index] = SubscriptionRoute(entity, route.rules, flag)
        self._rewire_forwarding()

    def rules(self, subscription: str) -> tuple[Rule, ...]:
        """The rules of the subscription at path ``subscription``, in order.

        Raises:
            EntityNotFoundError: no such subscription.
        """
        return tuple(self._route(subscription)[1].rules)

    def set_rules(self, subscription: str, rules: Sequence[Rule], now: float) -> None:
        """Replace the rules of the subscription at path ``subscription``; rules whose name
        is new are dated ``now``.

        Raises:
            EntityNotFoundError: no such subscription.
        """
        topic, route, index = self._route(subscription)
        record = self.records[route.entity.key]
        topic.subscriptions[index] = SubscriptionRoute(
            route.entity, tuple(rules), route.dead_letter_on_filter_error
        )
        record.rule_created_at = {
            rule.name.lower(): record.rule_created_at.get(rule.name.lower(), now) for rule in rules
        }

    def _route(self, subscription: str) -> tuple[Topic, SubscriptionRoute, int]:
        record = self._record(subscription, "subscription")
        topic = self.topic(record.path.rsplit("/", 2)[0])
        for index, route in enumerate(topic.subscriptions):
            if route.entity.key == record.path.lower():
                return topic, route, index
        raise EntityNotFoundError(f"The messaging entity '{subscription}' could not be found.")

    def remove(self, path: str) -> list[str]:
        """Delete a queue, topic (with its subscriptions) or subscription, and its messages.

        Returns:
            The lower-cased paths of every entity removed (dead-letter queues included).

        Raises:
            EntityNotFoundError: nothing has that path.
        """
        key = path.strip("/").lower()
        record = self.records.get(key)
        if record is None:
            raise EntityNotFoundError(f"The messaging entity '{path}' could not be found.")
        removed: list[str] = []
        if record.kind == "topic":
            for sub_key in [k for k in self.records if k.startswith(key + "/")]:
                removed += self.remove(sub_key)
            self._topics.discard(key)
        if record.kind == "subscription":
            topic, _route, index = self._route(key)
            del topic.subscriptions[index]
        del self.records[key]
        for entity_key in (key, f"{key}/$deadletterqueue"):
            if self._entities.pop(entity_key, None) is not None:
                removed.append(entity_key)
            self._subscriptions.discard(entity_key)
        self._rewire_forwarding()
        return removed

    # --- looking up -------------------------------------------------------------------------

    def topic(self, name: str) -> Topic:
        """The topic named ``name``.

        Raises:
            EntityNotFoundError: no such topic.
        """
        entity = self._entities.get(name.strip("/").lower())
        if not isinstance(entity, Topic):
            raise EntityNotFoundError(f"The messaging entity '{name}' could not be found.")
        return entity

    def is_topic(self, entity: Entity) -> bool:
        """Whether ``entity`` is a topic (senders only; receivers use its subscriptions)."""
        return entity.key in self._topics

    def is_subscription(self, entity: Entity) -> bool:
        """Whether ``entity`` is a subscription or a subscription's dead-letter queue."""
        return entity.key in self._subscriptions

    def __iter__(self) -> Iterator[Entity]:
        return iter(list(self._entities.values()))

    def attach_journal(self, journal: Journal) -> None:
        """Report every later durable change of every entity (also those created later) to
        ``journal``."""
        self._journal = journal
        for entity in self._entities.values():
            entity.journal = journal

    def get(self, key: str) -> Entity | None:
        """The entity with the lower-cased path ``key``, if it exists."""
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
        for entity in list(self._entities.values()):
            entity.process_due(now)
