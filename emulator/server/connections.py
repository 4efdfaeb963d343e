"""Connection acceptance and teardown: limits, SASL, handshake and idle time-outs, errors.

Deleting an entity (administration API) detaches every link on it, as Azure does.

Hostile or broken clients: frames are limited to :attr:`ServerLimits.max_frame_size`, a
connection that has not opened within ``handshake_timeout`` or sent nothing within
``idle_timeout`` is closed, more than ``max_connections`` are refused, and a transport
error drops that connection only.
"""

from __future__ import annotations

import logging
from typing import Any

from proton import Endpoint

from emulator.errors import EntityNotFoundError
from emulator.server.amqp import TimerTask, condition, log
from emulator.server.ended_channels import client_sent_nothing
from emulator.server.link_attach import LinkAttach
from emulator.server.link_roles import EntitySenderLink, connection_state, role_of

__all__ = ["Connections"]


def _log_transport_error(transport: Any, condition: Any) -> None:
    """Log why a connection failed, at a level that says whose problem it is.

    A socket closed after the client ended a session or closed the connection is routine
    (DEBUG; frames it sends on an ended session are dropped before proton sees them, see
    :mod:`~emulator.server.ended_channels`). A client that vanishes without closing (a
    killed process) or that closes before sending a byte (a port probe, a health check)
    is INFO; anything else (garbage, framing and protocol errors, idle timeouts) is a
    broken client: WARNING.
    """
    name, description = str(condition.name), str(condition.description or "")
    connection = transport.connection
    closing = connection is not None and connection_state(connection).peer_closing
    if client_sent_nothing(transport):
        log.info("a client connected and closed without sending a byte (a port probe?)")
    elif description == "connection aborted":
        level = logging.DEBUG if closing else logging.INFO
        log.log(level, "client dropped its connection without an AMQP close")
    else:
        log.warning("connection error: %s %s", name, description)


class Connections(LinkAttach):
    """proton connection and transport events."""

    def on_connection_init(self, event: Any) -> None:
        self._connections.add(event.connection)

    def on_connection_bound(self, event: Any) -> None:
        connection, transport = event.connection, event.transport

        def setup() -> None:
            connection_state(connection)
            if self._stopping or len(self._connections) > self.limits.max_connections:
                if not self._stopping:
                    log.warning("refusing a connection: %d open", len(self._connections) - 1)
                transport.emulator_dropped = True  # ours: no transport error to report
                transport.close_tail()
                transport.close_head()
                return
            transport.max_frame_size = self.limits.max_frame_size
            transport.idle_timeout = self.limits.idle_timeout
            sasl = transport.sasl()
            sasl.allowed_mechs("ANONYMOUS")
            if self._container is not None:
                self._container.schedule(
                    self.limits.handshake_timeout,
                    TimerTask(lambda: self._check_handshake(connection)),
                )

        self._guarded(connection, setup)

    def _check_handshake(self, connection: Any) -> None:
        def check() -> None:
            if connection.state & Endpoint.REMOTE_UNINIT and connection in self._connections:
                log.info("closing a connection that did not open within the handshake timeout")
                transport = connection.transport
                if transport is not None:
                    # Said above: the transport error that closing raises is ours, not news.
                    transport.emulator_dropped = True
                    transport.close_tail()
                    transport.close_head()
                    self._wake()

        self._guarded(None, check)

    def on_connection_remote_open(self, event: Any) -> None:
        event.connection.container = "servicebus-emulator"

    def on_connection_remote_close(self, event: Any) -> None:
        connection_state(event.connection).peer_closing = True
        self._guarded(event.connection, lambda: self._forget_connection(event.connection))

    def on_session_remote_close(self, event: Any) -> None:
        connection_state(event.connection).peer_closing = True

    def on_transport_closed(self, event: Any) -> None:
        connection = event.connection
        if connection is not None:
            self._guarded(None, lambda: self._forget_connection(connection))

    def on_transport_error(self, event: Any) -> None:
        transport = event.transport

        def drop() -> None:
            # Once only: closing the tail of a failed transport reports the error again.
            if getattr(transport, "emulator_dropped", False):
                return
            transport.emulator_dropped = True
            condition = transport.condition
            if condition is not None:
                _log_transport_error(transport, condition)
            # Do not wait for a broken peer to close its side: drop the socket once the
            # close frame is written, and wake the reactor so that it does so now (its
            # select() may otherwise sleep for seconds).
            transport.close_tail()
            self._wake()

        self._guarded(None, drop)

    def _wake(self) -> None:
        if self._container is not None:
            self._container.schedule(0.01, self._noop)

    def on_connection_final(self, event: Any) -> None:
        self._connections.discard(event.connection)

    def _forget_connection(self, connection: Any) -> None:
        self._connections.discard(connection)
        state = connection_state(connection)
        for link in state.sender_links:
            self._remove_sender_link(link)
        state.sender_links.clear()
        state.reply_links.clear()
        for waiters in list(self._waiters.values()):
            for waiter in [w for w in waiters if w.link.connection == connection]:
                self._drop_waiter(waiter)

    def close_entity_links(self, keys: list[str]) -> None:
        """Detach every client link on the deleted entities ``keys`` (lower-cased paths)
        with ``amqp:not-found``, and refuse receivers still waiting for a session there."""
        gone = set(keys)
        for connection in list(self._connections):
            link = connection.link_head(0)
            while link is not None:
                entity = getattr(role_of(link), "entity", None)
                if entity is not None and entity.key in gone and link.state & Endpoint.LOCAL_ACTIVE:
                    if isinstance(role_of(link), EntitySenderLink):
                        self._remove_sender_link(link)
                    link.condition = condition(
                        EntityNotFoundError.condition,
                        f"The messaging entity '{entity.name}' has been deleted.",
                    )
                    link.close()
                link = link.next(0)
        for entity in [e for e in self._waiters if e.key in gone]:
            for waiter in list(self._waiters[entity]):
                self._drop_waiter(waiter)
                if waiter.link.state & Endpoint.LOCAL_UNINIT:
                    self._refuse(
                        waiter.link,
                        EntityNotFoundError(
                            f"The messaging entity '{entity.name}' has been deleted."
                        ),
                    )
            del self._waiters[entity]
        for entity in [e for e in self._sender_links if e.key in gone]:
            del self._sender_links[entity]
