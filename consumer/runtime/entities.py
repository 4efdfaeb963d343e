"""Do the queues the consumer reads exist? Checked at start-up and reported by ``/readyz``.

Attaching a link to an entity that does not exist fails with ``amqp:not-found``, which
the SDK raises as ``MessagingEntityNotFoundError``
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messaging-exceptions-latest).
Only that definite answer stops start-up: a namespace that cannot be reached (or refuses
the credential) may come back, and the receivers' reconnect loop waits for it.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.exceptions import MessagingEntityNotFoundError

from common.servicebus import how_to_create_queue

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 30.0
"""Seconds the start-up check waits for Service Bus before leaving it to the receivers."""


@dataclass(frozen=True)
class QueueEntity:
    """A queue the consumer reads, and the setting that names it.

    Attributes:
        name: Queue name.
        setting: Environment variable naming it (e.g. ``CONSUMER_AUDIT_QUEUE``), or
            ``None`` when it did not come from settings.
    """

    name: str
    setting: str | None = None


def describe_missing(
    entity: QueueEntity, fully_qualified_namespace: str, *, dead_letter: bool = False
) -> str:
    """One line saying which entity is missing, which setting names it and how to create it.

    Args:
        entity: The queue.
        fully_qualified_namespace: Where the client looked (``host`` or ``host:port``).
        dead_letter: The queue's dead-letter queue is the missing entity.
    """
    what = f"queue {entity.name!r}"
    if dead_letter:
        what = f"dead-letter queue {entity.name}/$DeadLetterQueue"
    setting = f" ({entity.setting})" if entity.setting else ""
    instead = f", or set {entity.setting} to a queue that exists" if entity.setting else ""
    return (
        f"{what}{setting} does not exist in namespace {fully_qualified_namespace}: "
        f"{how_to_create_queue(fully_qualified_namespace, entity.name)}{instead}"
    )


class MissingQueueError(Exception):
    """Queues (or their dead-letter queues) the consumer needs do not exist.

    ``str(error)`` is one line naming each missing entity, its setting and how to create
    it; ``missing`` holds the same, one string per entity.
    """

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__("; ".join(missing))
        self.missing = list(missing)


async def check_queues(client: Any, entities: Sequence[QueueEntity]) -> None:
    """Attach a receiver to each queue and its dead-letter queue, all at once, and detach.

    The receivers are opened without a receive call, so they hold no link credit and
    lock no message.

    Args:
        client: The process's ``ServiceBusClient``.
        entities: The queues to check.

    Raises:
        MissingQueueError: Service Bus answered that an entity does not exist. Other
            failures (unreachable, unauthorised, no answer within :data:`CHECK_TIMEOUT`)
            are logged, not raised.
    """
    targets = [(entity, dead_letter) for entity in entities for dead_letter in (False, True)]
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            outcomes = await asyncio.gather(
                *(_attach(client, entity.name, dead_letter) for entity, dead_letter in targets),
                return_exceptions=True,
            )
    except TimeoutError:
        logger.warning(
            "checking the queues took over %.0f s; receivers will keep trying", CHECK_TIMEOUT
        )
        return
    missing_queues = {
        entity
        for (entity, dead_letter), outcome in zip(targets, outcomes, strict=True)
        if not dead_letter and isinstance(outcome, MessagingEntityNotFoundError)
    }
    missing: list[str] = []
    for (entity, dead_letter), outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, MessagingEntityNotFoundError):
            if dead_letter and entity in missing_queues:
                continue  # the queue itself is missing: say so once
            namespace = client.fully_qualified_namespace
            missing.append(describe_missing(entity, namespace, dead_letter=dead_letter))
        elif isinstance(outcome, BaseException):
            logger.warning(
                "cannot check queue %s%s yet: %r",
                entity.name,
                "/$DeadLetterQueue" if dead_letter else "",
                outcome,
            )
    if missing:
        raise MissingQueueError(missing)


async def _attach(client: Any, queue: str, dead_letter: bool) -> None:
    sub_queue = ServiceBusSubQueue.DEAD_LETTER if dead_letter else None
    async with client.get_queue_receiver(queue, sub_queue=sub_queue, prefetch_count=0):
        pass
