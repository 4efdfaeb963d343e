"""Limits the server applies to clients: sizes, credit, time-outs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_MESSAGE_SIZE", "RECEIVER_LINK_CREDIT", "ServerLimits"]

#: Default largest message (the Service Bus Standard tier's 256 KiB); per queue it is
#: ``MaxMessageSizeInKilobytes``, advertised as the link's ``max-message-size``.
MAX_MESSAGE_SIZE = 256 * 1024

#: Credit our receiver links (entity and request links) grant, topped up when below half.
RECEIVER_LINK_CREDIT = 1000


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Protection against misbehaving clients. Times are seconds.

    Attributes:
        max_frame_size: Largest AMQP frame accepted (advertised in ``open``); a larger frame
            is a framing error that closes the connection.
        idle_timeout: A connection that sends nothing (not even an empty frame) for this
            long is closed; advertised in ``open`` so well-behaved clients send heartbeats.
        handshake_timeout: A connection that has not completed SASL and ``open`` by then is
            closed.
        max_connections: More simultaneous connections are closed at once (proton's reactor
            uses ``select()``, limited to 1024 descriptors).
        max_outgoing_bytes: Bytes buffered for one connection that does not read its socket
            after which it gets no more deliveries or request credit until it reads.
        session_wait_timeout: How long a "next available session" receiver waits when the
            client gives no ``com.microsoft:timeout`` (Azure's default operation timeout).
    """

    max_frame_size: int = 65536
    idle_timeout: float = 600.0
    handshake_timeout: float = 10.0
    max_connections: int = 500
    max_outgoing_bytes: int = 4 * 1024 * 1024
    session_wait_timeout: float = 60.0
