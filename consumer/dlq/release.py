"""Giving a held message back without counting a delivery (AMQP ``released``).

Hand-written on the SDK's internals because its public API has no ``released`` (``abandon``
counts a delivery): this is the call the SDK itself makes for messages that arrive outside
a receive call (AMQP 1.0 section 3.4.4). If a future SDK removes that path, this falls back
to ``abandon``.
"""

import logging

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusReceiver

logger = logging.getLogger("consumer.dlq")


async def release(receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage) -> None:
    """Release ``message`` (held by ``receiver``); its delivery count stays as it was.

    Best effort: if it fails, the lock expires after the queue's LockDuration.
    """
    handler = getattr(receiver, "_handler", None)
    settle = getattr(handler, "settle_messages_async", None)
    delivery_id = getattr(message, "_delivery_id", None)
    delivery_tag = getattr(message, "_delivery_tag", None)
    try:
        if settle is None or delivery_id is None or delivery_tag is None:
            logger.warning("this SDK cannot release messages; abandoning (delivery count +1)")
            await receiver.abandon_message(message)
        else:
            await settle(delivery_id, delivery_tag, "released")
    except Exception:  # best effort, see above
        logger.debug("could not release dead letter %s", message.sequence_number, exc_info=True)
