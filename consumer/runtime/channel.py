"""One SDK receiver or sender, with every call serialised.

The SDK documents that ``ServiceBusReceiver`` and ``ServiceBusSender`` are not
coroutine-safe ("Thread safety" in the azure-servicebus README): the async pyamqp
receiver shares one connection, link state and delivery-tag set between
``receive_messages``, settlement (which sends an unsettled disposition and pumps the
connection until the service echoes the outcome) and lock renewal (a management
request/response). So handlers run concurrently, but every call on one receiver takes the
channel's lock; FIFO waiters keep a settlement from starving behind repeated receives.
We renew locks ourselves through the same lock instead of ``AutoLockRenewer``, which
would call the receiver from its own task (:mod:`consumer.runtime.lock` gives the figures).
"""

import asyncio
import logging
import time
from datetime import datetime

from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender

from consumer.runtime.credit import take_back_credit
from consumer.runtime.entities import EntityPath

logger = logging.getLogger(__name__)

FURTHER_PULL_SECONDS = 0.01
"""How long a receive call keeps collecting after its first message arrived."""
SOCKET_TIMEOUT_SECONDS = 0.02
"""Longest single socket read of the receiver's connection work loop (SDK default 0.2)."""


class ReceiverChannel:
    """A peek-lock receiver on one queue or subscription.

    Args:
        client: The process's client.
        queue: Entity path: a queue name or ``<topic>/Subscriptions/<subscription>``.
        prefetch_count: SDK prefetch (0 = off). Prefetched messages are locked while
            they wait in the buffer, so keep it below what can be processed within the
            lock duration. See
            https://learn.microsoft.com/azure/service-bus-messaging/service-bus-prefetch
        generation: Increases each time the queue's receiver is recreated.
        session_wait: Make it a session receiver on the next available session
            (``NEXT_AVAILABLE_SESSION``); :meth:`open` waits up to this many seconds for
            one and raises the SDK's ``OperationTimeoutError`` when none comes.
            ``None``: not a session receiver.
    """

    def __init__(
        self,
        client: ServiceBusClient,
        queue: str,
        *,
        prefetch_count: int,
        generation: int,
        session_wait: float | None = None,
    ) -> None:
        self.queue = queue
        self.generation = generation
        self._lock = asyncio.Lock()
        # Once the first message of a receive call has arrived, the SDK keeps pulling
        # until max_message_count are there, for up to 0.2 s (``receiver_mixins``:
        # ``_further_pull_receive_timeout``) in reads that each block for up to
        # ``socket_timeout`` (0.2 s): below saturation every message then waits ~200 ms
        # before its handler starts, and settlements wait behind the call. Messages the
        # service already sent arrive within a few ms; wait only that.
        self._session_wait = session_wait
        sessions: dict[str, object] = {}
        if session_wait is not None:
            sessions = {"session_id": NEXT_AVAILABLE_SESSION, "max_wait_time": session_wait}
        self._receiver: ServiceBusReceiver = EntityPath.parse(queue).receiver(
            client,
            receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
            prefetch_count=prefetch_count,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            **sessions,
        )
        if hasattr(self._receiver, "_further_pull_receive_timeout"):
            self._receiver._further_pull_receive_timeout = FURTHER_PULL_SECONDS
        self.opened = False
        self.closed = False
        self.broken = False
        """Set after a receive error: the link is suspect, recreate the channel."""
        self.last_message_at = time.monotonic()
        self._takes_back_credit = prefetch_count == 0  # prefetch keeps credit on purpose
        self.holds_credit = False
        """The last receive call left link credit that could not be taken back."""

    async def open(self) -> None:
        """Attach the link (CBS auth + receiver link); a session receiver waits for a session.

        Raises:
            azure.servicebus.exceptions.OperationTimeoutError: a session receiver got no
                session within ``session_wait``.
            azure.servicebus.exceptions.ServiceBusError: e.g. ``MessagingEntityNotFoundError``.
        """
        async with self._lock:
            # Accepting the next available session answers "none now" with a timeout,
            # which the SDK retries like a failure (``retry_total`` times with back-off:
            # 15 s measured for a 0.5 s wait); the session loop asks again itself.
            config = getattr(self._receiver, "_config", None)
            retries = getattr(config, "retry_total", None)
            if self._session_wait is not None and isinstance(retries, int):
                config.retry_total = 0  # type: ignore[union-attr]
            try:
                await self._receiver.__aenter__()
            finally:
                if self._session_wait is not None and isinstance(retries, int):
                    config.retry_total = retries  # type: ignore[union-attr]
            self.opened = True

    async def receive(
        self, max_message_count: int, max_wait_time: float
    ) -> list[ServiceBusReceivedMessage]:
        async with self._lock:
            messages = await self._receiver.receive_messages(
                max_message_count=max_message_count, max_wait_time=max_wait_time
            )
            # Under the same lock: a settlement or renewal reading the connection while
            # the link holds credit would release what arrives (consumer.runtime.credit).
            short = len(messages) < max_message_count and self._takes_back_credit
            self.holds_credit = short and not await take_back_credit(self._receiver)
        if messages:
            self.last_message_at = time.monotonic()
        return messages

    async def complete(self, message: ServiceBusReceivedMessage) -> None:
        async with self._lock:
            await self._receiver.complete_message(message)

    async def abandon(self, message: ServiceBusReceivedMessage) -> None:
        async with self._lock:
            await self._receiver.abandon_message(message)

    async def dead_letter(
        self, message: ServiceBusReceivedMessage, reason: str, description: str
    ) -> None:
        async with self._lock:
            await self._receiver.dead_letter_message(
                message, reason=reason, error_description=description
            )

    async def renew_lock(self, message: ServiceBusReceivedMessage) -> datetime:
        """Renew the message's lock; returns the new ``locked_until_utc``."""
        async with self._lock:
            return await self._receiver.renew_message_lock(message)

    @property
    def session_id(self) -> str | None:
        """The session this receiver holds (session receivers, once open)."""
        session = self._receiver.session  # None on a receiver without sessions
        return session.session_id if session is not None else None

    @property
    def session_locked_until(self) -> datetime | None:
        """When the held session's lock expires (aware UTC); ``None`` without a session."""
        session = self._receiver.session
        return session.locked_until_utc if session is not None else None

    async def renew_session_lock(self) -> datetime:
        """Renew the held session's lock; returns the new expiry (aware UTC).

        Raises:
            azure.servicebus.exceptions.SessionLockLostError: the lock is gone.
        """
        async with self._lock:
            return await self._receiver.session.renew_lock()

    async def close(self) -> None:
        """Detach (the SDK releases prefetched, unprocessed messages). Never raises."""
        if self.closed:
            return
        self.closed = True
        async with self._lock:
            try:
                await self._receiver.close()
            except Exception as exc:
                logger.info("closing receiver on %s: %r", self.queue, exc)


class SenderChannel:
    """A sender to one queue, opened lazily, calls serialised.

    Args:
        client: The process's client.
        queue: Queue name.
    """

    def __init__(self, client: ServiceBusClient, queue: str) -> None:
        self._client = client
        self.queue = queue
        self._lock = asyncio.Lock()
        self._sender: ServiceBusSender | None = None

    async def schedule(self, message: ServiceBusMessage, at: datetime) -> int:
        """Schedule ``message`` for ``at`` (aware UTC); returns its sequence number.

        Uses the ``schedule-message`` management operation
        (https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages).
        """
        async with self._lock:
            if self._sender is None:
                self._sender = self._client.get_queue_sender(self.queue)
            try:
                [sequence_number] = await self._sender.schedule_messages(message, at)
            except Exception:
                # Start from a fresh link next time.
                sender, self._sender = self._sender, None
                await _close_quietly(sender)
                raise
            return sequence_number

    async def close(self) -> None:
        async with self._lock:
            sender, self._sender = self._sender, None
            await _close_quietly(sender)


async def _close_quietly(sender: ServiceBusSender | None) -> None:
    if sender is None:
        return
    try:
        await sender.close()
    except Exception as exc:
        logger.info("closing sender: %r", exc)
