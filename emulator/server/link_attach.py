"""Link attach and detach: what each client link is bound to, and how it is answered.

* client sender -> entity: :class:`EntityReceiverLink` (sized by ``max-message-size``);
* client receiver <- entity: :class:`EntitySenderLink`. On a session-enabled queue it holds
  a session lock (https://learn.microsoft.com/azure/service-bus-messaging/message-sessions):
  the receiver asks for it with the source filter ``com.microsoft:session-filter``, and the
  attach answer names the session and its ``com.microsoft:locked-until-utc``. A "next
  available session" attach is answered only once a session is available, or refused with
  ``com.microsoft:timeout`` when the client's ``com.microsoft:timeout`` passes;
* ``$cbs`` and ``<entity>/$management``: :class:`RequestReceiverLink` for requests,
  :class:`ReplySenderLink` for replies (found by address on the same connection).
"""

from __future__ import annotations

import functools
from typing import Any

from proton import Endpoint, Link, Terminus, symbol, ulong

from emulator import codec
from emulator.addressing import Address, Node, parse_address
from emulator.entity import Entity
from emulator.errors import (
    EmulatorError,
    EntityNotFoundError,
    InvalidOperationError,
    OperationTimeoutError,
    SessionLockLostError,
)
from emulator.model import SessionInfo
from emulator.server.amqp import TimerTask, condition, log, text
from emulator.server.delivery_pump import DeliveryPump
from emulator.server.limits import RECEIVER_LINK_CREDIT
from emulator.server.link_roles import (
    AttachPending,
    EntityReceiverLink,
    EntitySenderLink,
    ReplySenderLink,
    RequestReceiverLink,
    SessionWaiter,
    connection_state,
    role_of,
)

__all__ = ["LinkAttach"]

_SESSION_FILTER = symbol("com.microsoft:session-filter")
_LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
_TIMEOUT_PROPERTY = "com.microsoft:timeout"
_MAX_BATCH_SIZE = symbol("com.microsoft:max-message-batch-size")
_MAX_BATCH_BYTES = 1024 * 1024
#: .NET ticks (100 ns) at the Unix epoch: ``DateTime(1970, 1, 1).Ticks``.
_TICKS_AT_EPOCH = 621355968000000000


def _ticks(seconds: float) -> int:
    """Seconds since the Unix epoch as .NET ticks (``com.microsoft:locked-until-utc``)."""
    return _TICKS_AT_EPOCH + round(seconds * 10_000_000)


def _session_filter(link: Any) -> tuple[bool, str | None]:
    """``(asked for a session, session id or None for next available)`` from the source."""
    # Re-decoded from its encoding so that binary map keys come back as bytes.
    decoded = codec.decode_value(link.remote_source.filter.encode())
    if not isinstance(decoded, dict):
        return False, None
    for key, value in decoded.items():
        if str(key) == str(_SESSION_FILTER):
            if hasattr(value, "descriptor") and hasattr(value, "value"):
                value = value.value
            return True, text(value) or None
    return False, None


class LinkAttach(DeliveryPump):
    """proton link open and close events, and "next available session" waiters."""

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
        except AttachPending:
            return
        except EmulatorError as exc:
            self._refuse(link, exc)
            return
        self._open_link(link)

    def _refuse(self, link: Any, error: EmulatorError) -> None:
        log.info("refusing link %r: %s", link.name, error.description)
        # AMQP 1.0 section 2.6.3: refuse with a null terminus on our side of the link
        # (source when we would send, target when we would receive), then detach.
        if link.is_sender:
            link.target.copy(link.remote_target)
            link.source.type = Terminus.UNSPECIFIED
        else:
            link.source.copy(link.remote_source)
            link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = condition(error.condition, error.description)
        link.close()

    def _open_link(self, link: Any) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        role = role_of(link)
        if isinstance(role, EntitySenderLink) and role.session is not None:
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
            link.flow(RECEIVER_LINK_CREDIT)
        if isinstance(role, EntitySenderLink):
            self._sender_links.setdefault(role.entity, []).append(link)
            connection_state(link.connection).sender_links.append(link)

    def _bind_link(self, link: Any, raw_address: str) -> None:
        try:
            address = parse_address(raw_address)
        except ValueError as exc:
            raise EntityNotFoundError(str(exc)) from None
        state = connection_state(link.connection)
        if address.node is Node.CBS:
            if link.is_sender:
                link.emulator_role = ReplySenderLink()
                state.reply_links[raw_address] = link
            else:
                link.emulator_role = RequestReceiverLink(None, raw_address)
            return
        entity = self.namespace.entity(address)
        if address.node is Node.MANAGEMENT:
            # A token for the entity covers its management node; @azure/service-bus puts
            # one for "<entity>/$management" itself.
            state.grants.require(address.entity_path + "/$management", self._clock())
            if link.is_sender:
                link.emulator_role = ReplySenderLink()
                state.reply_links[raw_address] = link
            else:
                link.emulator_role = RequestReceiverLink(entity, raw_address)
            return
        state.grants.require(address.entity_path, self._clock())
        link.max_message_size = entity.settings.max_message_size
        # Topics take senders only, subscriptions receivers only; Azure refuses the other
        # link with amqp:not-allowed (github.com/Azure/amqpnetlite/issues/427).
        if link.is_receiver and self.namespace.is_subscription(entity):
            raise InvalidOperationError(f"Cannot send messages to a subscription ({entity.name}).")
        if link.is_sender and self.namespace.is_topic(entity):
            raise InvalidOperationError(
                f"Cannot receive from a topic ({entity.name}): receive from one of its "
                "subscriptions, '<topic>/Subscriptions/<name>'."
            )
        if link.is_receiver:
            if entity.is_dead_letter_queue:
                raise InvalidOperationError("Cannot send messages to a dead-letter queue.")
            link.emulator_role = EntityReceiverLink(entity)
            # Batches are limited like single messages, up to Azure's 1 MB batch limit.
            link.properties = {
                _MAX_BATCH_SIZE: ulong(min(entity.settings.max_message_size, _MAX_BATCH_BYTES))
            }
            return
        role = EntitySenderLink(
            entity, receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED
        )
        self._bind_session(link, address, role)
        link.emulator_role = role

    def _bind_session(self, link: Any, address: Address, role: EntitySenderLink) -> None:
        wants_session, session_id = _session_filter(link)
        entity = role.entity
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
            role.session = session
            return
        link.emulator_role = role
        waiter = SessionWaiter(link, entity)
        timeout = self.limits.session_wait_timeout
        properties = link.remote_properties
        if isinstance(properties, dict):
            for key, value in properties.items():
                if str(key) == _TIMEOUT_PROPERTY and isinstance(value, int) and value > 0:
                    timeout = value / 1000.0
        waiter.task = self._container.schedule(
            timeout, TimerTask(lambda: self._waiter_timed_out(waiter))
        )
        self._waiters.setdefault(entity, []).append(waiter)
        raise AttachPending

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
            role: EntitySenderLink = link.emulator_role
            role.session = session
            self._guarded(link.connection, functools.partial(self._open_link, link))

    def _waiter_timed_out(self, waiter: SessionWaiter) -> None:
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

    def _drop_waiter(self, waiter: SessionWaiter) -> None:
        waiters = self._waiters.get(waiter.entity, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if waiter.task is not None:
            waiter.task.cancel()

    def _detach(self, link: Any) -> None:
        role = role_of(link)
        if isinstance(role, EntitySenderLink):
            self._remove_sender_link(link)
            for waiter in list(self._waiters.get(role.entity, [])):
                if waiter.link == link:
                    self._drop_waiter(waiter)
            if link.state & Endpoint.LOCAL_UNINIT:
                # Detached while waiting for a session: answer the attach, then detach.
                link.source.copy(link.remote_source)
                link.target.copy(link.remote_target)
                link.open()
                link.close()
        elif isinstance(role, ReplySenderLink):
            replies = connection_state(link.connection).reply_links
            for key in [k for k, v in replies.items() if v == link]:
                del replies[key]

    def _remove_sender_link(self, link: Any) -> None:
        role = role_of(link)
        if isinstance(role, EntitySenderLink):
            links = self._sender_links.get(role.entity, [])
            if link in links:
                links.remove(link)
            if role.session is not None:
                session, role.session = role.session, None
                role.entity.release_session(session, link)

    def _on_session_lost(self, entity: Entity, session: SessionInfo, owner: object) -> None:
        """A session lock expired: detach the receiver that held it, as Azure does."""
        link: Any = owner
        role = role_of(link)
        if isinstance(role, EntitySenderLink) and role.session is session:
            role.session = None
            links = self._sender_links.get(entity, [])
            if link in links:
                links.remove(link)
            if link.state & Endpoint.LOCAL_ACTIVE:
                link.condition = condition(
                    SessionLockLostError.condition,
                    f"The session lock of session '{session.session_id}' expired.",
                )
                link.close()

    def _on_available(self, entity: Entity) -> None:
        if self._waiters.get(entity):
            self._serve_waiters(entity)
        self._pump(entity)
