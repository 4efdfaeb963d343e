"""Entity semantics: the message state machine of a queue or subscription and its
dead-letter sub-queue, topics (:mod:`~emulator.entity.topic`) and auto-forwarding.

Knows nothing of AMQP; the wire layer (:mod:`emulator.server`) calls in. :class:`Entity`
is the public face; the modules below it are its layers (see :mod:`emulator.entity.queue`).
"""

from emulator.entity.journal import Journal
from emulator.entity.queue import Entity
from emulator.entity.settings import MAX_DELIVERY_COUNT_EXCEEDED, TTL_EXPIRED, EntitySettings

__all__ = [
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "TTL_EXPIRED",
    "Entity",
    "EntitySettings",
    "Journal",
]
