"""The AMQP 1.0 protocol layer: a proton reactor ``Handler`` that serves the namespace.

proton does the framing, SASL and type encoding. This handler uses the low-level reactor
API (with proton's ``Handshaker`` for connection/session open and close) rather than
``MessagingHandler``, which would decode and auto-settle deliveries and report ``modified``
as ``released``; Service Bus semantics need every disposition as sent.

Per link (set as attributes on proton's link objects, which proton keeps in its record):

* client sender -> entity: :class:`_Inbox` (accept messages, settle ``accepted``);
* client receiver <- entity: :class:`_Outbox` (peek-lock or receive-and-delete deliveries,
  settlement echoed as a *settled* disposition of the same outcome type, as the SDK waits for
  it; see https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement).
  On a session-enabled queue the outbox holds a session lock
  (https://learn.microsoft.com/azure/service-bus-messaging/message-sessions): the receiver
  asks for it with the source filter ``com.microsoft:session-filter``, and the attach
  answer names the session and its ``com.microsoft:locked-until-utc``. A "next available
  session" attach is answered only once a session is available, or refused with
  ``com.microsoft:timeout`` when the client's ``com.microsoft:timeout`` passes;
* ``$cbs`` and ``<entity>/$management`` request links: :class:`_Requests`; their reply
  links are found by address on the same connection.

Everything runs on the reactor thread. Timers (locks, scheduled messages, expiry) are one
reactor task armed for the namespace's earliest deadline. With a store (``--data-dir``),
everything that acknowledges a change waits until the reactor is idle and the batch of
changes is committed (``on_reactor_quiesced``).

Hostile or broken clients: frames are limited to :attr:`ServerLimits.max_frame_size`, a
connection that has not opened within ``handshake_timeout`` or sent nothing within
``idle_timeout`` is closed, a connection that does not read its socket gets no more
deliveries and no more request credit once ``max_outgoing_bytes`` are buffered for it, and
any error while handling one connection closes that connection only.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proton import Condition, Disposition, Endpoint, Handler, Link, Terminus, symbol, ulong
from proton.handlers import Handshaker

from emulator import codec
from emulator.addressing import Address, Node, parse_address
from emulator.auth import ConnectionGrants, SasValidator
from emulator.codec import AmqpDecodeError
from emulator.entity import Entity
from emulator.errors import (
    EmulatorError,
    EntityNotFoundError,
    InvalidOperationError,
    MessageLockLostError,
    MessageSizeExceededError,
    OperationTimeoutError,
    SessionLockLostError,
)
from emulator.management import handle_management_request
from emulator.model import SessionInfo, render_message
from emulator.namespace import Namespace
from emulator.store import SqliteStore

__all__ = ["MAX_MESSAGE_SIZE", "EmulatorHandler", "ServerLimits"]

_log = logging.getLogger(__name__)

#: Default largest message (the Service Bus Standard tier's 256 KiB); per queue it is
#: ``MaxMessageSizeInKilobytes``, advertised as the link's ``max-message-size``.
MAX_MESSAGE_SIZE = 256 * 1024

#: Credit granted to client senders and request links, topped up when below half.
_INBOUND_CREDIT = 1000

_DEAD_LETTER_CONDITION = "com.microsoft:dead-letter"
_SESSION_FILTER = symbol("com.microsoft:session-filter")
_LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
_TIMEOUT_PROPERTY = "com.microsoft:timeout"
_MAX_BATCH_SIZE = symbol("com.microsoft:max-message-batch-size")
_MAX_BATCH_BYTES = 1024 * 1024
#: .NET ticks (100 ns) at the Unix epoch: ``DateTime(1970, 1, 1).Ticks``.
_TICKS_AT_EPOCH = 621355968000000000

_ACTIVE = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE


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


@dataclass(eq=False)
class _ConnectionState:
    grants: ConnectionGrants = field(default_factory=ConnectionGrants)
    #: The client has ended a session or closed the connection: it is shutting down.
    peer_closing: bool = False
    reply_links: dict[str, Any] = field(default_factory=dict)
    outboxes: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class _Inbox:
    """Client sender -> entity."""

    entity: Entity


@dataclass(eq=False)
class _Outbox:
    """Entity -> client receiver; ``session`` is the locked session on session queues."""

    entity: Entity
    receive_and_delete: bool
    session: SessionInfo | None = None


@dataclass(eq=False)
class _Requests:
    """Request link of ``$cbs`` (``entity`` None) or ``<entity>/$management``."""

    entity: Entity | None
    address: str


@dataclass(eq=False)
class _Replies:
    """Reply link of a request/response node; nothing to do but send."""


@dataclass(eq=False)
class _SessionWaiter:
    """A "next available session" receiver whose attach is not answered yet."""

    link: Any
    entity: Entity
    task: Any = None


class _Pending(Exception):
    """Raised by link binding when the attach answer must wait (next available session)."""


class _Handshaker(Handshaker):
    """proton's handshaker, except that links are opened (or refused) by the emulator only:
    a "next available session" attach stays unanswered until a session is available."""

    @staticmethod
    def on_link_remote_open(event: Any) -> None:
        return None


class _TimerTask(Handler):
    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def on_timer_task(self, event: Any) -> None:
        self._callback()


def _condition(name: str, description: str) -> Any:
    """An AMQP error with an ``info`` map, as Azure sends (a tracking id).

    Some clients index the error's fields by position (the SDK's connection close handler
    reads ``info`` unconditionally), and proton leaves an empty ``info`` out entirely.
    """
    return Condition(name, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def _state(connection: Any) -> _ConnectionState:
    try:
        state: _ConnectionState = connection.emulator_state
    except AttributeError:
        state = _ConnectionState()
        connection.emulator_state = state
    return state


def _log_transport_error(connection: Any, condition: Any) -> None:
    """Log why a connection failed, at a level that says whose problem it is.

    A client shutting down is routine (DEBUG): the Python SDK ends a session and then
    detaches a management link on it, which proton answers with "no such channel", and a
    socket closed after that (or after the AMQP close) is reported as "connection
    aborted". A client that vanishes without closing (a killed process) is INFO; anything
    else (garbage, framing and protocol errors, idle timeouts) is a broken client: WARNING.
    """
    name, description = str(condition.name), str(condition.description or "")
    closing = connection is not None and _state(connection).peer_closing
    if closing and (name == "amqp:not-allowed" and description.startswith("no such channel")):
        _log.debug("client closed its connection: %s %s", name, description)
    elif description == "connection aborted":
        level = logging.DEBUG if closing else logging.INFO
        _log.log(level, "client dropped its connection without an AMQP close")
    else:
        _log.warning("connection error: %s %s", name, description)


def _role(link: Any) -> Any:
    try:
        return link.emulator_role
    except AttributeError:
        return None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _ticks(seconds: float) -> int:
    """Seconds since the Unix epoch as .NET ticks (``com.microsoft:locked-until-utc``)."""
    return _TICKS_AT_EPOCH + round(seconds * 10_000_000)


def _session_filter(link: Any) -> tuple[bool, str | None]:
    """``(asked for a session, session id or None for next available)`` from the source."""
    filters = link.remote_source.filter
    filters.rewind()
    decoded = codec.owned(filters.get_object()) if filters.next() is not None else None
    if not isinstance(decoded, dict):
        return False, None
    for key, value in decoded.items():
        if str(key) == str(_SESSION_FILTER):
            if hasattr(value, "descriptor") and hasattr(value, "value"):
                value = value.value
            return True, _str(value) or None
    return False, None


class EmulatorHandler(Handler):
    """Serves a :class:`~emulator.namespace.Namespace` over AMQP.

    Args:
        namespace_factory: Builds the entities, given the callbacks to run when messages
            become available in one and when a session lock expires.
        validator: SAS validator for CBS ``put-token``.
        clock: Seconds since the epoch (UTC); ``time.time`` unless testing.
        limits: Protection against misbehaving clients.
    """

    def __init__(
        self,
        namespace_factory: Callable[
            [Callable[[Entity], None], Callable[[Entity, SessionInfo, object], None]], Namespace
        ],
        validator: SasValidator,
        clock: Callable[[], float] = time.time,
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__()
        self.handlers = [_Handshaker()]
        self._clock = clock
        self._validator = validator
        self.limits = limits or ServerLimits()
        self.namespace = namespace_factory(self._on_available, self._on_session_lost)
        #: The durable store, or ``None`` (memory only). Set before the reactor starts.
        self.store: SqliteStore | None = None
        self._after_commit_actions: list[Callable[[], None]] = []
        self._commit_retry: Any = None
        self._container: Any = None
        self._acceptor: Any = None
        self._connections: set[Any] = set()
        self._consumers: dict[Entity, list[Any]] = {}
        self._waiters: dict[Entity, list[_SessionWaiter]] = {}
        self._pumping: set[Entity] = set()
        self._repump: set[Entity] = set()
        self._throttled: set[Entity] = set()
        self._throttle_task: Any = None
        self._timer_task: Any = None
        self._timer_at: float | None = None
        self._timer_handler = _TimerTask(self._on_timer)
        self._stopping = False
        self._stop_deadline = 0.0
        self._stop_handler = _TimerTask(self._stop_tick)
        self._noop = _TimerTask(lambda: None)

    def bind(self, container: Any, acceptor: Any) -> None:
        """Give the handler its container (for timers) and acceptor (closed on stop)."""
        self._container = container
        self._acceptor = acceptor

    # --- guard ------------------------------------------------------------------------------

    def _guarded(self, connection: Any, action: Callable[[], None]) -> None:
        """Run ``action``; a bug closes the connection it happened on, never the emulator."""
        try:
            action()
        except Exception:
            _log.exception("internal error; closing the connection")
            if connection is not None:
                try:
                    connection.condition = _condition(
                        "amqp:internal-error", "The emulator hit an internal error."
                    )
                    connection.close()
                except Exception:
                    _log.exception("could not close the connection")
        try:
            self._arm_timer()
        except Exception:
            _log.exception("could not arm the timer")

    # --- durability -------------------------------------------------------------------------

    def _after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` (an acknowledgement) once the changes made so far are durable."""
        if self.store is None:
            action()
        else:
            self._after_commit_actions.append(action)

    def on_reactor_init(self, event: Any) -> None:
        self._guarded(None, lambda: None)  # arms the timer for restored scheduled messages

    def on_reactor_quiesced(self, event: Any) -> None:
        """The reactor handled every pending event: commit the batch, then acknowledge."""
        store = self.store
        if store is None or not (store.has_pending or self._after_commit_actions):
            return
        if self._commit_retry is not None:
            return
        try:
            store.commit()
        except Exception:  # sqlite3.Error (disk full ...) or a bug: never crash the reactor
            _log.exception("could not write to %s; acknowledgements wait", store.path)
            self._commit_retry = self._container.schedule(1.0, _TimerTask(self._retry_commit))
            return
        actions, self._after_commit_actions = self._after_commit_actions, []
        for action in actions:
            try:
                action()
            except Exception:
                _log.exception("could not send an acknowledgement")

    def _retry_commit(self) -> None:
        self._commit_retry = None
        self.on_reactor_quiesced(None)

    # --- connections ------------------------------------------------------------------------

    def on_connection_init(self, event: Any) -> None:
        self._connections.add(event.connection)

    def on_connection_bound(self, event: Any) -> None:
        connection, transport = event.connection, event.transport

        def setup() -> None:
            _state(connection)
            if self._stopping or len(self._connections) > self.limits.max_connections:
                if not self._stopping:
                    _log.warning("refusing a connection: %d open", len(self._connections) - 1)
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
                    _TimerTask(lambda: self._check_handshake(connection)),
                )

        self._guarded(connection, setup)

    def _check_handshake(self, connection: Any) -> None:
        def check() -> None:
            if connection.state & Endpoint.REMOTE_UNINIT and connection in self._connections:
                _log.info("closing a connection that did not open within the handshake timeout")
                transport = connection.transport
                if transport is not None:
                    transport.close_tail()
                    transport.close_head()
                    self._wake()

        self._guarded(None, check)

    def on_connection_remote_open(self, event: Any) -> None:
        event.connection.container = "servicebus-emulator"

    def on_connection_remote_close(self, event: Any) -> None:
        _state(event.connection).peer_closing = True
        self._guarded(event.connection, lambda: self._forget_connection(event.connection))

    def on_session_remote_close(self, event: Any) -> None:
        _state(event.connection).peer_closing = True

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
                _log_transport_error(transport.connection, condition)
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
        state = _state(connection)
        for link in state.outboxes:
            self._remove_consumer(link)
        state.outboxes.clear()
        state.reply_links.clear()
        for waiters in list(self._waiters.values()):
            for waiter in [w for w in waiters if w.link.connection == connection]:
                self._drop_waiter(waiter)

    # --- links ------------------------------------------------------------------------------

    def on_link_remote_open(self, event: Any) -> None:
        link = event.link
        self._guarded(link.connection, lambda: self._attach(link))

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        self._guarded(link.connection, lambda: self._detach(link))

    def _attach(self, link: Any) -> None:
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        raw_address = (link.remote_source if link.is_sender else link.remote_target).address or ""
        try:
            self._bind_link(link, raw_address)
        except _Pending:
            return
        except EmulatorError as exc:
            self._refuse(link, exc)
            return
        self._open_link(link)

    def _refuse(self, link: Any, error: EmulatorError) -> None:
        _log.info("refusing link %r: %s", link.name, error.description)
        # AMQP 1.0 section 2.6.3: refuse with a null terminus on our side of the link
        # (source when we would send, target when we would receive), then detach.
        if link.is_sender:
            link.target.copy(link.remote_target)
            link.source.type = Terminus.UNSPECIFIED
        else:
            link.source.copy(link.remote_source)
            link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = _condition(error.condition, error.description)
        link.close()

    def _open_link(self, link: Any) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        role = _role(link)
        if isinstance(role, _Outbox) and role.session is not None:
            session = role.session
            filters = link.source.filter
            filters.clear()
            filters.put_map()
            filters.enter()
            filters.put_symbol(_SESSION_FILTER)
            filters.put_string(session.session_id)
            filters.exit()
            link.properties = {_LOCKED_UNTIL_UTC: _ticks(session.locked_until or self._clock())}
        link.open()
        if link.is_receiver:
            link.flow(_INBOUND_CREDIT)
        if isinstance(role, _Outbox):
            self._consumers.setdefault(role.entity, []).append(link)
            _state(link.connection).outboxes.append(link)

    def _bind_link(self, link: Any, raw_address: str) -> None:
        try:
            address = parse_address(raw_address)
        except ValueError as exc:
            raise EntityNotFoundError(str(exc)) from None
        state = _state(link.connection)
        if address.node is Node.CBS:
            if link.is_sender:
                link.emulator_role = _Replies()
                state.reply_links[raw_address] = link
            else:
                link.emulator_role = _Requests(None, raw_address)
            return
        entity = self.namespace.entity(address)
        if address.node is Node.MANAGEMENT:
            # A token for the entity covers its management node; @azure/service-bus puts
            # one for "<entity>/$management" itself.
            state.grants.require(address.entity_path + "/$management", self._clock())
            if link.is_sender:
                link.emulator_role = _Replies()
                state.reply_links[raw_address] = link
            else:
                link.emulator_role = _Requests(entity, raw_address)
            return
        state.grants.require(address.entity_path, self._clock())
        link.max_message_size = entity.settings.max_message_size
        if link.is_receiver:
            if entity.is_dead_letter_queue:
                raise InvalidOperationError("Cannot send messages to a dead-letter queue.")
            link.emulator_role = _Inbox(entity)
            # Batches are limited like single messages, up to Azure's 1 MB batch limit.
            link.properties = {
                _MAX_BATCH_SIZE: ulong(min(entity.settings.max_message_size, _MAX_BATCH_BYTES))
            }
            return
        outbox = _Outbox(entity, receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED)
        self._bind_session(link, address, outbox)
        link.emulator_role = outbox

    def _bind_session(self, link: Any, address: Address, outbox: _Outbox) -> None:
        wants_session, session_id = _session_filter(link)
        entity = outbox.entity
        if not entity.requires_session:
            if wants_session:
                raise InvalidOperationError(
                    f"It is not possible for an entity that does not require sessions to "
                    f"create a sessionful message receiver ({address.entity_path})."
                )
            return
        if not wants_session:
            raise InvalidOperationError(
                f"It is not possible for an entity that requires sessions to create a "
                f"non-sessionful message receiver ({address.entity_path})."
            )
        session = entity.accept_session(session_id, link, link.connection, self._clock())
        if session is not None:
            outbox.session = session
            return
        link.emulator_role = outbox
        waiter = _SessionWaiter(link, entity)
        timeout = self.limits.session_wait_timeout
        properties = link.remote_properties
        if isinstance(properties, dict):
            for key, value in properties.items():
                if str(key) == _TIMEOUT_PROPERTY and isinstance(value, int) and value > 0:
                    timeout = value / 1000.0
        waiter.task = self._container.schedule(
            timeout, _TimerTask(lambda: self._waiter_timed_out(waiter))
        )
        self._waiters.setdefault(entity, []).append(waiter)
        raise _Pending

    def _serve_waiters(self, entity: Entity) -> None:
        waiters = self._waiters.get(entity)
        now = self._clock()
        while waiters and entity.has_ready_session(now):
            waiter = waiters.pop(0)
            if waiter.task is not None:
                waiter.task.cancel()
            link = waiter.link
            if not link.state & Endpoint.REMOTE_ACTIVE or not link.state & Endpoint.LOCAL_UNINIT:
                continue
            session = entity.accept_session(None, link, link.connection, now)
            if session is None:  # pragma: no cover - has_ready_session said otherwise
                waiters.insert(0, waiter)
                break
            role: _Outbox = link.emulator_role
            role.session = session
            self._guarded(link.connection, functools.partial(self._open_link, link))

    def _waiter_timed_out(self, waiter: _SessionWaiter) -> None:
        def expire() -> None:
            waiters = self._waiters.get(waiter.entity, [])
            if waiter not in waiters:
                return
            waiters.remove(waiter)
            link = waiter.link
            if link.state & Endpoint.LOCAL_UNINIT and link.state & Endpoint.REMOTE_ACTIVE:
                self._refuse(
                    link,
                    OperationTimeoutError(
                        "The operation did not complete within the allocated time: no session "
                        "is available."
                    ),
                )

        self._guarded(waiter.link.connection, expire)

    def _drop_waiter(self, waiter: _SessionWaiter) -> None:
        waiters = self._waiters.get(waiter.entity, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if waiter.task is not None:
            waiter.task.cancel()

    def _detach(self, link: Any) -> None:
        role = _role(link)
        if isinstance(role, _Outbox):
            self._remove_consumer(link)
            for waiter in list(self._waiters.get(role.entity, [])):
                if waiter.link == link:
                    self._drop_waiter(waiter)
            if link.state & Endpoint.LOCAL_UNINIT:
                # Detached while waiting for a session: answer the attach, then detach.
                link.source.copy(link.remote_source)
                link.target.copy(link.remote_target)
                link.open()
                link.close()
        elif isinstance(role, _Replies):
            replies = _state(link.connection).reply_links
            for key in [k for k, v in replies.items() if v == link]:
                del replies[key]

    def _remove_consumer(self, link: Any) -> None:
        role = _role(link)
        if isinstance(role, _Outbox):
            links = self._consumers.get(role.entity, [])
            if link in links:
                links.remove(link)
            if role.session is not None:
                session, role.session = role.session, None
                role.entity.release_session(session, link)

    def _on_session_lost(self, entity: Entity, session: SessionInfo, owner: object) -> None:
        """A session lock expired: detach the receiver that held it, as Azure does."""
        link: Any = owner
        role = _role(link)
        if isinstance(role, _Outbox) and role.session is session:
            role.session = None
            links = self._consumers.get(entity, [])
            if link in links:
                links.remove(link)
            if link.state & Endpoint.LOCAL_ACTIVE:
                link.condition = _condition(
                    SessionLockLostError.condition,
                    f"The session lock of session '{session.session_id}' expired.",
                )
                link.close()

    # --- flow and dispatch ------------------------------------------------------------------

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        role = _role(link)
        if isinstance(role, _Outbox):
            self._guarded(link.connection, lambda: self._pump(role.entity))

    def _on_available(self, entity: Entity) -> None:
        if self._waiters.get(entity):
            self._serve_waiters(entity)
        self._pump(entity)

    def _backlog(self, link: Any) -> int:
        """Bytes buffered for the link's connection that the peer has not read yet."""
        try:
            transport = link.connection.transport
            pending = transport.pending() if transport is not None else 0
            return max(0, int(pending)) + int(link.session.outgoing_bytes)
        except Exception:
            return 0

    def _pump(self, entity: Entity) -> None:
        """Hand available messages to receivers with credit, round-robin."""
        if entity in self._pumping:
            self._repump.add(entity)
            return
        self._pumping.add(entity)
        try:
            while True:
                self._repump.discard(entity)
                self._pump_once(entity)
                if entity not in self._repump:
                    break
        finally:
            self._pumping.discard(entity)

    def _pump_once(self, entity: Entity) -> None:
        links = self._consumers.get(entity)
        if not links:
            return
        limit = self.limits.max_outgoing_bytes
        ready = []
        for link in links:
            if link.credit <= 0 or link.state & _ACTIVE != _ACTIVE:
                continue
            if self._backlog(link) > limit:
                self._throttle(entity)
                continue
            ready.append(link)
        if ready:
            links.append(links.pop(0))  # rotate the starting point between pumps
        now = self._clock()
        while ready:
            for link in list(ready):
                if not self._deliver(link, entity, now) or link.credit <= 0:
                    ready.remove(link)
                elif self._backlog(link) > limit:
                    ready.remove(link)
                    self._throttle(entity)
        for link in list(links):
            if link.drain_mode and link.credit > 0:
                role: _Outbox = link.emulator_role
                if not entity.has_available(now, role.session):
                    link.drained()

    def _throttle(self, entity: Entity) -> None:
        """Retry delivering to ``entity`` shortly (a receiver's connection is backed up)."""
        self._throttled.add(entity)
        if self._throttle_task is None and self._container is not None:
            self._throttle_task = self._container.schedule(0.05, _TimerTask(self._unthrottle))

    def _unthrottle(self) -> None:
        self._throttle_task = None
        entities, self._throttled = self._throttled, set()
        for entity in entities:
            self._guarded(None, functools.partial(self._pump, entity))

    def _deliver(self, link: Any, entity: Entity, now: float) -> bool:
        role: _Outbox = link.emulator_role
        if role.receive_and_delete:
            message = entity.receive_and_delete(now, role.session)
            if message is None:
                return False
            delivery = link.delivery(uuid.uuid4().bytes_le)
            link.stream(render_message(message))
            link.advance()
            delivery.settle()
            return True
        message = entity.lock_next(now, role.session)
        if message is None or message.lock_token is None:
            return False
        token = message.lock_token
        # The lock token is the delivery tag (.NET GUID byte order). proton decodes tags
        # as UTF-8 text, so keep the token on the delivery instead of reading the tag back.
        delivery = link.delivery(token.bytes_le)
        delivery.lock_token = token
        link.stream(render_message(message))
        link.advance()
        return True

    # --- deliveries -------------------------------------------------------------------------

    def on_delivery(self, event: Any) -> None:
        delivery = event.delivery
        link = delivery.link
        if link.is_receiver:
            self._guarded(link.connection, lambda: self._on_transfer(link, delivery))
        else:
            self._guarded(link.connection, lambda: self._on_disposition(link, delivery))

    def _replenish(self, link: Any) -> None:
        """Top up a receiving link's credit, unless its peer is not reading our replies."""
        if link.credit >= _INBOUND_CREDIT // 2 or not link.state & Endpoint.LOCAL_ACTIVE:
            return
        if self._backlog(link) > self.limits.max_outgoing_bytes:
            retry = _TimerTask(lambda: self._guarded(None, lambda: self._replenish(link)))
            self._container.schedule(0.1, retry)
            return
        link.flow(_INBOUND_CREDIT - link.credit)

    def _on_transfer(self, link: Any, delivery: Any) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        role = _role(link)
        limit = (
            role.entity.settings.max_message_size if isinstance(role, _Inbox) else MAX_MESSAGE_SIZE
        )
        if delivery.partial:
            if delivery.pending > limit + 65536:
                # AMQP 1.0 section 2.7.3: exceeding max-message-size is a link error.
                link.condition = _condition(
                    MessageSizeExceededError.condition,
                    f"The message exceeds the limit of {limit} bytes.",
                )
                link.close()
            return
        payload = bytes(link.recv(delivery.pending) or b"")
        link.advance()
        self._replenish(link)
        if isinstance(role, _Inbox):
            self._accept_messages(role.entity, delivery, payload)
        elif isinstance(role, _Requests):
            self._answer_request(link, role, delivery, payload)
        else:
            delivery.update(Disposition.REJECTED)
            delivery.settle()

    def _accept_messages(self, entity: Entity, delivery: Any, payload: bytes) -> None:
        limit = entity.settings.max_message_size
        try:
            contents, size = codec.decode_transfer_sized(payload)
            if size > limit:
                raise MessageSizeExceededError(
                    f"The received message (size {size} bytes) exceeds the limit "
                    f"({limit} bytes) currently allowed on the link."
                )
            entity.enqueue_all(contents, self._clock())
        except AmqpDecodeError as exc:
            self._reject(delivery, "amqp:decode-error", str(exc))
            return
        except EmulatorError as exc:
            self._reject(delivery, exc.condition, exc.description)
            return

        def accept() -> None:
            delivery.update(Disposition.ACCEPTED)
            delivery.settle()

        self._after_commit(accept)

    @staticmethod
    def _reject(delivery: Any, condition: str, description: str) -> None:
        delivery.local.condition = _condition(condition, description)
        delivery.update(Disposition.REJECTED)
        delivery.settle()

    def _answer_request(self, link: Any, role: _Requests, delivery: Any, payload: bytes) -> None:
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        try:
            request = codec.decode_request(payload)
        except AmqpDecodeError as exc:
            _log.info("undecodable request on %s: %s", role.address, exc)
            return
        connection = link.connection
        state = _state(connection)
        now = self._clock()
        if role.entity is None:
            body, properties = self._put_token(state, request, now)
        else:
            response = handle_management_request(role.entity, request, now, scope=connection)
            properties = codec.status_properties(
                response.status_code,
                response.description,
                code_key="statusCode",
                description_key="statusDescription",
                condition=response.condition,
            )
            body = response.body
            if response.status_code >= 300:
                _log.info(
                    "management %s on %s -> %s %s",
                    request.application_properties.get("operation"),
                    role.address,
                    response.status_code,
                    response.description,
                )
        encoded = codec.encode_response(
            correlation_id=request.message_id, application_properties=properties, body=body
        )

        def reply() -> None:
            reply_link = state.reply_links.get(request.reply_to or "") or state.reply_links.get(
                role.address
            )
            if reply_link is None or reply_link.state & Endpoint.LOCAL_CLOSED:
                _log.warning(
                    "no reply link for %r on %s; dropping the response",
                    request.reply_to,
                    role.address,
                )
                return
            out = reply_link.delivery(uuid.uuid4().bytes)
            reply_link.stream(encoded)
            reply_link.advance()
            out.settle()

        if role.entity is None:
            reply()
        else:
            self._after_commit(reply)

    def _put_token(
        self, state: _ConnectionState, request: codec.Request, now: float
    ) -> tuple[Any, dict[str, Any]]:
        operation = _str(request.application_properties.get("operation"))
        if operation != "put-token":
            code, description = 400, f"Unsupported CBS operation {operation!r}."
        else:
            token = _str(request.body) or ""
            audience = _str(request.application_properties.get("name")) or ""
            try:
                state.grants.add(self._validator.validate(token, audience, now))
                code, description = 200, "OK"
            except EmulatorError as exc:
                _log.info("CBS put-token for %r refused: %s", audience, exc.description)
                code, description = exc.status_code, exc.description
        properties = codec.status_properties(
            code, description, code_key="status-code", description_key="status-description"
        )
        return None, properties

    def _on_disposition(self, link: Any, delivery: Any) -> None:
        role = _role(link)
        if not isinstance(role, _Outbox):
            if delivery.settled:
                delivery.settle()
            return
        outcome = delivery.remote_state
        if outcome not in (
            Disposition.ACCEPTED,
            Disposition.REJECTED,
            Disposition.RELEASED,
            Disposition.MODIFIED,
        ):
            if delivery.settled:  # settled without an outcome: nothing to apply
                delivery.settle()
            return
        try:
            token: uuid.UUID = delivery.lock_token
        except AttributeError:
            delivery.settle()
            return
        self._settle(role, delivery, token, outcome)

    def _settle(self, role: _Outbox, delivery: Any, token: uuid.UUID, outcome: Any) -> None:
        """Apply a receiver's outcome and echo it settled (the SDK waits for the echo)."""
        entity = role.entity
        now = self._clock()
        remote = delivery.remote
        error: EmulatorError | None = None
        try:
            if outcome == Disposition.ACCEPTED:
                entity.complete(token, now)
            elif outcome == Disposition.RELEASED:
                entity.release(token, now)
            elif outcome == Disposition.MODIFIED:
                modify = remote.annotations
                props = {str(k): codec.owned(v) for k, v in modify.items()} if modify else None
                # undeliverable-here means "not for this receiver again": Service Bus defers;
                # otherwise it abandons (delivery count +1). @azure/service-bus sends both
                # without delivery-failed, the Python SDK with it.
                if remote.undeliverable:
                    entity.defer(token, now, props)
                else:
                    entity.abandon(token, now, props)
            else:
                reason, description = self._dead_letter_details(remote.condition)
                entity.dead_letter(token, now, reason, description)
        except MessageLockLostError as exc:
            # On a session receiver, a lost message lock means the session lock was lost.
            error = SessionLockLostError(exc.description) if role.session is not None else exc
        except EmulatorError as exc:  # e.g. dead-lettering inside a DLQ
            error = exc
        if delivery.settled:
            delivery.settle()
            return

        def echo() -> None:
            if error is not None:
                # A rejected echo carrying an error is how the service reports a settlement
                # it could not apply; the SDK raises e.g. MessageLockLostError from it.
                delivery.local.condition = _condition(error.condition, error.description)
                delivery.update(Disposition.REJECTED)
            elif outcome == Disposition.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
                delivery.update(Disposition.MODIFIED)
            else:
                # Same outcome type; a dead-letter echo must carry no error.
                delivery.update(outcome)
            delivery.settle()

        self._after_commit(echo)

    @staticmethod
    def _dead_letter_details(condition: Any) -> tuple[str | None, str | None]:
        if condition is None:
            return None, None
        info = condition.info if isinstance(condition.info, dict) else {}
        info = {str(k): v for k, v in info.items()}
        reason = _str(info.get("DeadLetterReason"))
        description = _str(info.get("DeadLetterErrorDescription"))
        if condition.name != _DEAD_LETTER_CONDITION:
            reason = reason or _str(condition.name)
            description = description or _str(condition.description)
        return reason, description

    # --- timers -----------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._container is None or self._stopping:
            return
        deadline = self.namespace.next_deadline()
        if deadline is None:
            return
        if self._timer_task is not None and self._timer_at is not None:
            if self._timer_at <= deadline:
                return
            self._timer_task.cancel()
        delay = max(0.0, deadline - self._clock()) + 0.001
        self._timer_task = self._container.schedule(delay, self._timer_handler)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer_task = None
        self._timer_at = None
        self._guarded(None, lambda: self.namespace.process_due(self._clock()))

    # --- stopping ---------------------------------------------------------------------------

    def on_emulator_stop(self, event: Any) -> None:
        """Application event injected from another thread: close everything and stop."""
        self._stopping = True
        _log.info("stopping: closing %d connection(s)", len(self._connections))
        if self._timer_task is not None:
            self._timer_task.cancel()
            self._timer_task = None
        if self._acceptor is not None:
            self._acceptor.close()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if waiter.task is not None:
                    waiter.task.cancel()
        self._waiters.clear()
        for connection in list(self._connections):
            if not connection.state & Endpoint.LOCAL_CLOSED:
                connection.close()
        self._stop_deadline = self._clock() + 1.0
        self._container.schedule(0.02, self._stop_handler)

    def _stop_tick(self) -> None:
        if self._connections and self._clock() < self._stop_deadline:
            self._container.schedule(0.02, self._stop_handler)
            return
        for connection in list(self._connections):
            transport = connection.transport
            if transport is not None:
                transport.close_tail()
                transport.close_head()
        self._connections.clear()
        if self._throttle_task is not None:
            self._throttle_task.cancel()
        if self._commit_retry is not None:
            self._commit_retry.cancel()
            self._commit_retry = None
        self.on_reactor_quiesced(None)
        self._container.stop()
