"""Start-up check: do the queues the producer sends to exist?

A sender link attached to a missing entity is refused by Service Bus (``amqp:not-found``,
``MessagingEntityNotFoundError`` in the SDK): accepting events for a queue that does not
exist would fill the outbox with events that can never be published. Service Bus being
unreachable is different: the outbox exists for exactly that (events are accepted and
published once it is back), so only a definite "not found" stops the start.
"""

import asyncio
import logging
from contextlib import suppress
from typing import Final

from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessagingEntityNotFoundError

from common.servicebus import open_servicebus_client
from producer.errors import MissingQueueError
from producer.settings import ProducerSettings

logger = logging.getLogger(__name__)

QUEUE_CHECK_TIMEOUT: Final = 10.0
"""Seconds the check gives each queue before calling it unknown."""


def queue_settings(settings: ProducerSettings) -> dict[str, str]:
    """Each queue the producer sends to, with the ``PRODUCER_*`` variable naming it."""
    return {
        settings.audit_queue: "PRODUCER_AUDIT_QUEUE",
        settings.notifications_queue: "PRODUCER_NOTIFICATIONS_QUEUE",
    }


async def find_queues(settings: ProducerSettings) -> dict[str, bool | None]:
    """Attach a sender to each queue of ``settings``.

    Returns:
        Queue name -> ``True`` (exists), ``False`` (Service Bus said it does not exist) or
        ``None`` (unknown: unreachable, refused credentials, or no answer within
        :data:`QUEUE_CHECK_TIMEOUT` seconds).
    """
    # No SDK retries: an unreachable namespace should cost one attempt, not a backoff.
    async with open_servicebus_client(settings, retry_total=0) as client:
        queues = list(queue_settings(settings))
        found = await asyncio.gather(*(_probe(client, queue) for queue in queues))
    return dict(zip(queues, found, strict=True))


async def _probe(client: ServiceBusClient, queue: str) -> bool | None:
    sender = client.get_queue_sender(queue)
    try:
        async with asyncio.timeout(QUEUE_CHECK_TIMEOUT):
            await sender.create_message_batch()  # attaches the sender link
        return True
    except MessagingEntityNotFoundError:
        return False
    except Exception as exc:
        logger.warning("could not check Service Bus queue %r at start-up: %r", queue, exc)
        return None
    finally:
        with suppress(Exception):
            await asyncio.wait_for(sender.close(), QUEUE_CHECK_TIMEOUT)


async def require_queues(settings: ProducerSettings) -> dict[str, bool | None]:
    """:func:`find_queues`, failing on the first queue Service Bus says does not exist.

    Returns:
        What :func:`find_queues` found (no ``False`` in it).

    Raises:
        MissingQueueError: naming the queue, its setting and how to create it.
    """
    found = await find_queues(settings)
    for queue, setting in queue_settings(settings).items():
        if found.get(queue) is False:
            raise MissingQueueError(queue, setting)
    return found
