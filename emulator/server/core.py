"""The wire layer's shared state and services: guard, durability, timers, stopping.

Everything runs on the reactor thread. Timers (locks, scheduled messages, expiry) are one
reactor task armed for the namespace's earliest deadline. With a store (``--data-dir``),
everything that acknowledges a change waits until the reactor is idle and the batch of
changes is committed (``on_reactor_quiesced``).
"""

from __future__ import annotations

import concurrent.futures
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proton import Endpoint, Handler
from proton.handlers import Handshaker

from emulator.auth import SasValidator
from emulator.entity import Entity
from emulator.namespace import Namespace
from emulator.server.amqp import TimerTask, condition, log
from emulator.server.ended_channels import EndedChannelIO
from emulator.server.limits import ServerLimits
from emulator.server.link_roles import SessionWaiter
from emulator.store import SqliteStore

__all__ = ["HandlerCore", "ReactorCall"]

#: The first byte of a TLS record carrying a handshake (a ClientHello); AMQP starts "AMQP".
_TLS_HANDSHAKE = 0x16


@dataclass(frozen=True, slots=True)
class ReactorCall:
    """A function another thread has run on the reactor thread (the administration API);
    ``future`` gets its result once the changes it made are durable."""

    function: Callable[[], Any]
    future: concurrent.futures.Future[Any]


class _ProtocolSniffingIO(EndedChannelIO):
    """:class:`EndedChannelIO` that hands connections opening with a TLS handshake to
    ``tls_handoff`` (HTTPS for the administration API) instead of the AMQP engine.

    The first byte is peeked, not read, so the TLS server sees the ClientHello whole; the
    socket is released from proton (not closed) and its transport dropped unseen.
    """

    def __init__(self, max_frame_size: int, tls_handoff: Callable[[socket.socket], None]) -> None:
        super().__init__(max_frame_size)
        self._tls_handoff = tls_handoff
        self._sniffed: weakref.WeakSet[Any] = weakref.WeakSet()

    def on_selectable_readable(self, event: Any) -> None:
        selectable = event.selectable
        transport = selectable._transport
        if transport is not None and selectable not in self._sniffed:
            try:
                first = selectable._delegate.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                return
            except OSError:
                first = b""  # the read below reports it
            self._sniffed.add(selectable)
            if first and first[0] == _TLS_HANDSHAKE:
                sock = selectable._delegate
                selectable.release()  # proton must not close the socket it no longer owns
                transport.emulator_dropped = True  # nothing to log: not an AMQP failure
                selectable._transport = None
                transport._selectable = None
                transport.close_tail()
                transport.close_head()
                selectable.terminate()
                selectable.update()
                self._tls_handoff(sock)
                return
        super().on_selectable_readable(event)


class _Handshaker(Handshaker):
    """proton's handshaker, except that links are opened (or refused) by the emulator only:
    a "next available session" attach stays unanswered until a session is available."""

    @staticmethod
    def on_link_remote_open(event: Any) -> None:
        return None


class HandlerCore(Handler):
    """State shared by the wire layer's parts, and what they all use: the guard, the
    after-commit queue, the namespace timer, waking and stopping the reactor.

    Args:
        validator: SAS validator for CBS ``put-token``.
        clock: Seconds since the epoch (UTC).
        limits: Protection against misbehaving clients.
    """

    #: The entities served (set by :class:`~emulator.server.handler.EmulatorHandler`).
    namespace: Namespace

    def __init__(
        self,
        validator: SasValidator,
        clock: Callable[[], float],
        limits: ServerLimits | None,
    ) -> None:
        super().__init__()
        self.handlers = [_Handshaker()]
        self._clock = clock
        self._validator = validator
        self.limits = limits or ServerLimits()
        #: The durable store, or ``None`` (memory only). Set before the reactor starts.
        self.store: SqliteStore | None = None
        self._after_commit_actions: list[Callable[[], None]] = []
        self._commit_retry: Any = None
        self._container: Any = None
        self._acceptor: Any = None
        self._connections: set[Any] = set()
        #: Each entity's sender links (to client receivers), in round-robin order.
        self._sender_links: dict[Entity, list[Any]] = {}
        self._waiters: dict[Entity, list[SessionWaiter]] = {}
        self._pumping: set[Entity] = set()
        self._repump: set[Entity] = set()
        self._throttled: set[Entity] = set()
        self._throttle_task: Any = None
        self._timer_task: Any = None
        self._timer_at: float | None = None
        self._timer_handler = TimerTask(self._on_timer)
        self._stopping = False
        self._stop_deadline = 0.0
        self._stop_handler = TimerTask(self._stop_tick)
        self._noop = TimerTask(lambda: None)

    def bind(
        self,
        container: Any,
        acceptor: Any,
        tls_handoff: Callable[[socket.socket], None] | None = None,
    ) -> None:
        """Give the handler its container (for timers) and acceptor (closed on stop), and
        put the frame filter of :mod:`~emulator.server.ended_channels` between the client
        sockets and their transports. Call before the container runs.

        Args:
            container: The proton container.
            acceptor: Its listening acceptor.
            tls_handoff: Takes the sockets of clients that open with a TLS handshake (the
                administration API over HTTPS); without it, they reach the AMQP engine,
                which refuses them.
        """
        self._container = container
        self._acceptor = acceptor
        # Replaces proton's IOHandler (and the GlobalOverrides around it, which only serves
        # connections the container opens itself; the emulator opens none).
        max_frame_size = self.limits.max_frame_size
        container.global_handler = (
            EndedChannelIO(max_frame_size)
            if tls_handoff is None
            else _ProtocolSniffingIO(max_frame_size, tls_handoff)
        )

    # --- guard ------------------------------------------------------------------------------

    def _guarded(self, connection: Any, action: Callable[[], None]) -> None:
        """Run ``action``; a bug closes the connection it happened on, never the emulator."""
        try:
            action()
        except Exception:
            log.exception("internal error; closing the connection")
            if connection is not None:
                try:
                    connection.condition = condition(
                        "amqp:internal-error", "The emulator hit an internal error."
                    )
                    connection.close()
                except Exception:
                    log.exception("could not close the connection")
        try:
            self._arm_timer()
        except Exception:
            log.exception("could not arm the timer")

    def _backlog(self, link: Any) -> int:
        """Bytes buffered for the link's connection that the peer has not read yet."""
        try:
            transport = link.connection.transport
            pending = transport.pending() if transport is not None else 0
            return max(0, int(pending)) + int(link.session.outgoing_bytes)
        except Exception:
            return 0

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
            log.exception("could not write to %s; acknowledgements wait", store.path)
            self._commit_retry = self._container.schedule(1.0, TimerTask(self._retry_commit))
            return
        actions, self._after_commit_actions = self._after_commit_actions, []
        for action in actions:
            try:
                action()
            except Exception:
                log.exception("could not send an acknowledgement")

    def _retry_commit(self) -> None:
        self._commit_retry = None
        self.on_reactor_quiesced(None)

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

    # --- calls from other threads -------------------------------------------------------

    def on_emulator_call(self, event: Any) -> None:
        """Application event injected from another thread: run a :class:`ReactorCall`."""
        call: ReactorCall = event.subject

        def run() -> None:
            if not call.future.set_running_or_notify_cancel():
                return
            try:
                result = call.function()
            except BaseException as exc:  # handed to the calling thread
                call.future.set_exception(exc)
                return
            self._after_commit(lambda: call.future.set_result(result))

        self._guarded(None, run)

    # --- stopping ---------------------------------------------------------------------------

    def on_emulator_stop(self, event: Any) -> None:
        """Application event injected from another thread: close everything and stop."""
        self._stopping = True
        log.info("stopping: closing %d connection(s)", len(self._connections))
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
