"""The entities the consumer reads (queues and topic subscriptions), and whether they exist.

Checked at start-up and reported by ``/readyz``. Attaching a link to an entity that does
not exist fails with ``amqp:not-found``, which the SDK raises as
``MessagingEntityNotFoundError``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-exceptions-latest).
Only that definite answer, or a definite refusal of the configured session mode, stops
start-up: a namespace that cannot be reached (or refuses the credential) may come back,
and the receivers' reconnect loop waits for it.
"""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.exceptions import MessagingEntityNotFoundError, ServiceBusError

from common.servicebus import how_to_create_queue

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 30.0
"""Seconds the start-up check waits for Service Bus before leaving it to the receivers."""
SUBSCRIPTIONS = "Subscriptions"
"""The middle segment of a subscription's entity path, ``<topic>/Subscriptions/<name>``."""
REPLAY_TARGET = "replayTarget"
"""Application property naming the one subscription (its name) a copy sent to a topic is
meant for: ``consumer dlq replay`` on a subscription sets it, since a copy can only go
through the topic (:mod:`consumer.dlq`); other subscriptions read by this consumer
complete such a copy unprocessed, and others can exclude it with the rule
``replayTarget IS NULL OR replayTarget = '<their name>'``."""


@dataclass(frozen=True)
class EntityPath:
    """A queue, or a topic's subscription, by its Service Bus entity path.

    Attributes:
        topic: The topic of a subscription; ``None`` for a queue.
        name: The queue's name, or the subscription's.

    A subscription's path is ``<topic>/Subscriptions/<name>`` (its dead-letter queue is
    ``<topic>/Subscriptions/<name>/$DeadLetterQueue``), see
    https://learn.microsoft.com/azure/service-bus-messaging/service-bus-queues-topics-subscriptions.
    """

    name: str
    topic: str | None = None

    @classmethod
    def parse(cls, path: str) -> "EntityPath":
        """``queue`` or ``topic/Subscriptions/name`` (the middle segment in any case).

        Raises:
            ValueError: empty segments, or a path with slashes that is not a subscription's.
        """
        parts = path.split("/")
        if len(parts) == 1 and parts[0]:
            return cls(parts[0])
        if len(parts) == 3 and parts[1].lower() == SUBSCRIPTIONS.lower() and parts[0] and parts[2]:
            return cls(parts[2], topic=parts[0])
        raise ValueError(
            f"{path!r} is neither a queue name nor a subscription path "
            f"<topic>/{SUBSCRIPTIONS}/<subscription>"
        )

    @property
    def is_subscription(self) -> bool:
        return self.topic is not None

    @property
    def path(self) -> str:
        """The entity path: the queue name, or ``<topic>/Subscriptions/<name>``."""
        return self.name if self.topic is None else f"{self.topic}/{SUBSCRIPTIONS}/{self.name}"

    @property
    def kind(self) -> str:
        """``queue`` or ``subscription``, for messages."""
        return "subscription" if self.is_subscription else "queue"

    def receiver(self, client: Any, **options: Any) -> Any:
        """The SDK receiver on this entity: ``get_subscription_receiver`` or
        ``get_queue_receiver`` of ``client`` with ``options`` (``sub_queue``,
        ``session_id``, ``prefetch_count`` ...)."""
        if self.topic is not None:
            return client.get_subscription_receiver(self.topic, self.name, **options)
        return client.get_queue_receiver(self.name, **options)


@dataclass(frozen=True)
class QueueEntity:
    """An entity the consumer reads, and the settings that name it.

    Attributes:
        name: Entity path: a queue name or ``<topic>/Subscriptions/<subscription>``.
        setting: Environment variable naming it (e.g. ``CONSUMER_AUDIT_QUEUE``), or
            ``None`` when it did not come from settings.
        sessions: Read with session receivers (the entity must require sessions).
        sessions_setting: Environment variable that turns sessions on for it.
    """

    name: str
    setting: str | None = None
    sessions: bool = False
    sessions_setting: str | None = None


def describe_missing(
    entity: QueueEntity, fully_qualified_namespace: str, *, dead_letter: bool = False
) -> str:
    """One line saying which entity is missing, which setting names it and how to create it.

    Args:
        entity: The queue or subscription.
        fully_qualified_namespace: Where the client looked (``host`` or ``host:port``).
        dead_letter: The entity's dead-letter queue is the missing entity.
    """
    path = EntityPath.parse(entity.name)
    what = f"{path.kind} {entity.name!r}"
    if dead_letter:
        what = f"dead-letter queue {entity.name}/$DeadLetterQueue"
    setting = f" ({entity.setting})" if entity.setting else ""
    instead = f", or set {entity.setting} to a {path.kind} that exists" if entity.setting else ""
    if path.topic is None:
        how = how_to_create_queue(fully_qualified_namespace, entity.name)
    else:
        how = (
            f'create subscription "{path.name}" on topic "{path.topic}" (emulator: add it to '
            f'the topic\'s "Subscriptions" in its --config file)'
        )
    return (
        f"{what}{setting} does not exist in namespace {fully_qualified_namespace}: {how}{instead}"
    )


def describe_session_mismatch(entity: QueueEntity) -> str:
    """One line saying the entity's RequiresSession disagrees with the consumer's setting."""
    path = EntityPath.parse(entity.name)
    switch = entity.sessions_setting or "the sessions setting"
    if entity.sessions:
        return (
            f"{path.kind} {entity.name!r} does not require sessions, but {switch} is on: "
            f"set {switch}=false, or read a {path.kind} created with RequiresSession=true"
        )
    return (
        f"{path.kind} {entity.name!r} requires sessions (RequiresSession), but {switch} is "
        f"off: set {switch}=true to process it in order per session"
    )


class SourceCheckError(Exception):
    """An entity the consumer reads cannot be used as configured.

    ``str(error)`` is one line naming each problem, the setting behind it and the fix;
    ``problems`` holds the same, one string per entity.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class MissingQueueError(SourceCheckError):
    """Queues or subscriptions (or their dead-letter queues) the consumer needs do not
    exist; ``missing`` holds one line per entity."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(missing)
        self.missing = list(missing)


class SessionsMismatchError(SourceCheckError):
    """An entity's RequiresSession disagrees with its ``CONSUMER_*_SESSIONS`` setting:
    Service Bus refuses a plain receiver on a session-enabled entity, and a session
    receiver on any other (``amqp:not-allowed``)."""


async def check_queues(client: Any, entities: Sequence[QueueEntity]) -> None:
    """Attach a receiver to each entity and its dead-letter queue, all at once, and detach.

    The receivers are opened without a receive call, so they hold no link credit and
    lock no message. A session entity is attached with a session receiver on a new,
    random session id (an empty session: nothing is locked that anyone waits for). An
    attach refused for another reason is tried once more in the other session mode: if
    that one works, the setting is wrong.

    Args:
        client: The process's ``ServiceBusClient``.
        entities: The queues and subscriptions to check.

    Raises:
        MissingQueueError: Service Bus answered that an entity does not exist.
        SessionsMismatchError: an entity's RequiresSession disagrees with its setting.
        Other failures (unreachable, unauthorised, no answer within
        :data:`CHECK_TIMEOUT`) are logged, not raised.
    """
    targets = [(entity, dead_letter) for entity in entities for dead_letter in (False, True)]
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            outcomes = await asyncio.gather(
                *(_attach(client, entity, dead_letter) for entity, dead_letter in targets),
                return_exceptions=True,
            )
            mismatched = await _mismatched(client, targets, outcomes)
    except TimeoutError:
        logger.warning(
            "checking the queues took over %.0f s; receivers will keep trying", CHECK_TIMEOUT
        )
        return
    missing_entities = {
        entity
        for (entity, dead_letter), outcome in zip(targets, outcomes, strict=True)
        if not dead_letter and isinstance(outcome, MessagingEntityNotFoundError)
    }
    missing: list[str] = []
    for (entity, dead_letter), outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, MessagingEntityNotFoundError):
            if dead_letter and entity in missing_entities:
                continue  # the entity itself is missing: say so once
            namespace = client.fully_qualified_namespace
            missing.append(describe_missing(entity, namespace, dead_letter=dead_letter))
        elif isinstance(outcome, BaseException) and entity not in mismatched:
            logger.warning(
                "cannot check %s%s yet: %r",
                entity.name,
                "/$DeadLetterQueue" if dead_letter else "",
                outcome,
            )
    if missing:
        raise MissingQueueError(missing)
    if mismatched:
        raise SessionsMismatchError([describe_session_mismatch(entity) for entity in mismatched])


async def _mismatched(
    client: Any,
    targets: Sequence[tuple[QueueEntity, bool]],
    outcomes: Sequence[object],
) -> list[QueueEntity]:
    """Entities refused in their session mode that attach in the other one."""
    refused = [
        entity
        for (entity, dead_letter), outcome in zip(targets, outcomes, strict=True)
        if not dead_letter
        and isinstance(outcome, ServiceBusError)
        and not isinstance(outcome, MessagingEntityNotFoundError)
    ]
    if not refused:
        return []
    flipped = [
        QueueEntity(entity.name, entity.setting, not entity.sessions, entity.sessions_setting)
        for entity in refused
    ]
    retried = await asyncio.gather(
        *(_attach(client, entity, False) for entity in flipped), return_exceptions=True
    )
    return [
        entity
        for entity, outcome in zip(refused, retried, strict=True)
        if not isinstance(outcome, BaseException)
    ]


async def _attach(client: Any, entity: QueueEntity, dead_letter: bool) -> None:
    options: dict[str, Any] = {"prefetch_count": 0}
    if dead_letter:
        options["sub_queue"] = ServiceBusSubQueue.DEAD_LETTER  # never session-enabled
    elif entity.sessions:
        options["session_id"] = f"consumer-check-{uuid.uuid4()}"
    async with EntityPath.parse(entity.name).receiver(client, **options):
        pass
