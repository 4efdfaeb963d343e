"""The AMQP 1.0 wire layer: a proton reactor ``Handler`` that serves the namespace.

proton does the framing, SASL and type encoding. The handler uses the low-level reactor
API (with proton's ``Handshaker`` for connection/session open and close) rather than
``MessagingHandler``, which would decode and auto-settle deliveries and report ``modified``
as ``released``; Service Bus semantics need every disposition as sent. Entity semantics
live in :mod:`emulator.entity`; this package only maps links and deliveries onto them.

Any error while handling one connection closes that connection only. Logs go to the
``emulator.server`` logger.
"""

from emulator.server.handler import EmulatorHandler
from emulator.server.limits import MAX_MESSAGE_SIZE, ServerLimits

__all__ = ["MAX_MESSAGE_SIZE", "EmulatorHandler", "ServerLimits"]
