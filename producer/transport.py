"""Sending, scheduling and cancelling messages over long-lived Service Bus senders.

Each queue gets a few senders (sender links, AMQP links on the client's one connection), each
owned by one task: callers hand over an operation and wait for its outcome. Sends that queue
up while the senders are busy go out together, in as few ``ServiceBusMessageBatch`` sends as
their size allows. With two sender links one batch is being encoded and written while the previous
one waits for Service Bus to accept it (the SDK waits for each transfer's disposition), which
is what lets the relay keep up with one sender sending ready-made batches. The SDK's async
sender is not documented as safe for concurrent operations, so one owner per sender also
keeps us on its supported path. After a failed operation the sender is closed and a new one
is opened for the next operation, so a half-broken AMQP link is never reused.

Senders connect lazily (on first use), so the producer starts, and keeps accepting events
into its outbox, while Service Bus is unreachable.

Azure references: batches
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-performance-improvements#batching-store-access,
scheduled messages
https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages.
"""

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import (
    MessageNotFoundError,
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
)

from common.futures import fail, resolve

logger = logging.getLogger(__name__)


class MessageTooLargeError(Exception):
    """A single message does not fit in an empty batch: it can never be sent as is."""


@dataclass
class ServiceBusHealth:
    """What the last Service Bus operations said about reachability (times in UTC).

    Attributes:
        last_success_at: End of the last successful operation.
        last_failure_at: End of the last failed operation.
        last_error: ``repr`` of the last failure.
        missing_queues: Queues whose last operation Service Bus refused because the
            entity does not exist (``MessagingEntityNotFoundError``).
    """

    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    missing_queues: set[str] = field(default_factory=set)

    @property
    def reachable(self) -> bool | None:
        """``False`` when the latest operation failed, ``None`` before any operation."""
        if self.last_failure_at is None:
            return None if self.last_success_at is None else True
        return self.last_success_at is not None and self.last_success_at > self.last_failure_at


@dataclass
class _Send:
    messages: Sequence[ServiceBusMessage]
    done: asyncio.Future[set[str]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Schedule:
    messages: Sequence[ServiceBusMessage]
    at: datetime
    done: asyncio.Future[list[int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Cancel:
    sequence_numbers: Sequence[int]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


_Operation = _Send | _Schedule | _Cancel


class _SenderLink:
    """One sender (AMQP sender link) of a queue, opened on first use, replaced after a failure."""

    def __init__(self, client: ServiceBusClient, queue: str, timeout: float) -> None:
        self._client = client
        self._queue = queue
        self._timeout = timeout
        self._sender: ServiceBusSender | None = None

    def get(self) -> ServiceBusSender:
        if self._sender is None:
            self._sender = self._client.get_queue_sender(self._queue)
        return self._sender

    async def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with suppress(Exception):
                await asyncio.wait_for(sender.close(), self._timeout)


class _QueueSender:
    """Owns one queue's sender links and runs the operations handed to them in order.

    Not a :class:`common.batching.Batcher`: that flushes one batch at a time, of one kind
    of item, while here several links, each its own task, take operations from one FIFO
    at once (one batch is written while the previous waits for its disposition), only
    adjacent sends join a batch (schedules and cancels go alone), a failed send fails the
    sends queued behind it, and closing cancels what waits instead of sending it.
    """

    def __init__(
        self,
        client: ServiceBusClient,
        queue: str,
        *,
        timeout: float,
        max_batch_messages: int,
        health: ServiceBusHealth,
        links: int = 2,
    ) -> None:
        self._queue = queue
        self._timeout = timeout
        self._max_batch_messages = max_batch_messages
        self._health = health
        self._links = [_SenderLink(client, queue, timeout) for _ in range(links)]
        self._pending: asyncio.Queue[_Operation] = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._run(link), name=f"servicebus-sender:{queue}:{index}")
            for index, link in enumerate(self._links)
        ]

    async def submit(self, operation: _Operation) -> None:
        await self._pending.put(operation)

    async def close(self) -> None:
        """Stop the links' tasks, cancel the operations waiting, close every sender at once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._pending.empty():
            self._pending.get_nowait().done.cancel()
        await asyncio.gather(*(link.close() for link in self._links))

    async def _run(self, link: _SenderLink) -> None:
        while True:
            first = await self._pending.get()
            if isinstance(first, _Send):
                sends = [first]
                held: list[_Operation] = []
                count = len(first.messages)
                while not self._pending.empty() and count < self._max_batch_messages:
                    nxt = self._pending.get_nowait()
                    if isinstance(nxt, _Send):
                        sends.append(nxt)
                        count += len(nxt.messages)
                    else:
                        held.append(nxt)
                        break
                await self._execute_sends(link, sends)
                for operation in held:
                    await self._execute(link, operation)
            else:
                await self._execute(link, first)

    async def _execute_sends(self, link: _SenderLink, sends: list[_Send]) -> None:
        messages = [m for s in sends for m in s.messages]
        try:
            async with asyncio.timeout(self._timeout):
                too_large = await self._send_batches(link.get(), messages)
        except asyncio.CancelledError:
            for send in sends:
                send.done.cancel()
            raise
        except Exception as exc:
            await self._failed(link, exc)
            for send in sends:
                fail(send.done, exc)
            self._fail_queued_sends(exc)
            return
        self._succeeded()
        for send in sends:
            # Nearly always nothing is too large: no id sets to build then.
            ids = {str(m.message_id) for m in send.messages} if too_large else set()
            resolve(send.done, too_large & ids)

    def _fail_queued_sends(self, exc: BaseException) -> None:
        """Fail the sends that queued up while a send was failing, with the same error.

        Otherwise each waits out its own ``operation_timeout`` against a Service Bus that
        just proved unreachable, holding its rows' leases all that time (publishes that
        start right after an event is committed queue here one per commit group).
        """
        kept: list[_Operation] = []
        while not self._pending.empty():
            operation = self._pending.get_nowait()
            if isinstance(operation, _Send):
                fail(operation.done, exc)
            else:
                kept.append(operation)
        for operation in kept:
            self._pending.put_nowait(operation)

    async def _execute(self, link: _SenderLink, operation: _Operation) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                sender = link.get()
                if isinstance(operation, _Schedule):
                    numbers = await sender.schedule_messages(
                        list(operation.messages), operation.at, timeout=self._timeout
                    )
                    resolve(operation.done, [int(n) for n in numbers])
                elif isinstance(operation, _Cancel):
                    await sender.cancel_scheduled_messages(
                        list(operation.sequence_numbers), timeout=self._timeout
                    )
                    resolve(operation.done, None)
                else:  # pragma: no cover - sends go through _execute_sends
                    raise TypeError(operation)
        except asyncio.CancelledError:
            operation.done.cancel()
            raise
        except MessageNotFoundError as exc:  # Service Bus answered: it is reachable
            self._succeeded()
            fail(operation.done, exc)
            return
        except Exception as exc:
            await self._failed(link, exc)
            fail(operation.done, exc)
            return
        self._succeeded()

    async def _send_batches(
        self, sender: ServiceBusSender, messages: list[ServiceBusMessage]
    ) -> set[str]:
        """Send ``messages`` in as few batches as fit; returns ids too large to ever send."""
        too_large: set[str] = set()
        batch: ServiceBusMessageBatch = await sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
                continue
            except MessageSizeExceededError:
                if len(batch) == 0:
                    too_large.add(str(message.message_id))
                    continue
            await sender.send_messages(batch, timeout=self._timeout)
            batch = await sender.create_message_batch()
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                too_large.add(str(message.message_id))
        if len(batch):
            await sender.send_messages(batch, timeout=self._timeout)
        return too_large

    def _succeeded(self) -> None:
        self._health.last_success_at = datetime.now(UTC)
        self._health.missing_queues.discard(self._queue)

    async def _failed(self, link: _SenderLink, exc: BaseException) -> None:
        if isinstance(exc, MessagingEntityNotFoundError):
            self._health.missing_queues.add(self._queue)
        self._health.last_failure_at = datetime.now(UTC)
        self._health.last_error = f"{type(exc).__name__}: {exc}"[:500]
        logger.warning("Service Bus operation on %s failed: %r", self._queue, exc)
        await link.close()


class ServiceBusTransport:
    """Send, schedule and cancel messages on the queues of one client.

    Use as an async context manager; senders are created on first use and closed on exit
    (see :meth:`close`).

    Args:
        client: The process's long-lived client.
        operation_timeout: Seconds one operation may take including the SDK's retries
            (``asyncio.TimeoutError`` -> raised as ``TimeoutError``).
        max_batch_messages: Most messages gathered from concurrent callers into one send.
        senders_per_queue: Senders (AMQP links) per queue working through its operations.
    """

    def __init__(
        self,
        client: ServiceBusClient,
        *,
        operation_timeout: float = 30.0,
        max_batch_messages: int = 500,
        senders_per_queue: int = 2,
    ) -> None:
        self._client = client
        self._timeout = operation_timeout
        self._max_batch_messages = max_batch_messages
        self._senders_per_queue = senders_per_queue
        self._senders: dict[str, _QueueSender] = {}
        self.health = ServiceBusHealth()

    async def __aenter__(self) -> "ServiceBusTransport":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the senders of every queue, all at once; never raises.

        Operations not finished are cancelled (their callers get ``CancelledError``). Each
        close is bounded by ``operation_timeout``; at once, because a close may wait on
        the network, and one after the other the shutdown would take the sum of them (the
        producer's shutdown has one deadline, :mod:`producer.shutdown`, and wraps this in
        ``asyncio.timeout``: a sender still closing then ends with the client's
        connection, or the process).
        """
        senders, self._senders = list(self._senders.values()), {}
        await asyncio.gather(*(sender.close() for sender in senders))

    def _sender(self, queue: str) -> _QueueSender:
        sender = self._senders.get(queue)
        if sender is None:
            sender = _QueueSender(
                self._client,
                queue,
                timeout=self._timeout,
                max_batch_messages=self._max_batch_messages,
                health=self.health,
                links=self._senders_per_queue,
            )
            self._senders[queue] = sender
        return sender

    async def send(self, queue: str, messages: Sequence[ServiceBusMessage]) -> set[str]:
        """Send ``messages`` to ``queue`` and wait until Service Bus has accepted them.

        Returns:
            Message ids that are larger than the queue's maximum message size and were not
            sent (they never can be).

        Raises:
            azure.servicebus.exceptions.ServiceBusError: the send failed after the SDK's
                retries; some of the messages may have been sent (duplicate detection
                drops them when they are sent again).
            TimeoutError: the operation took longer than ``operation_timeout``.
        """
        if not messages:
            return set()
        operation = _Send(messages)
        await self._sender(queue).submit(operation)
        return await operation.done

    async def schedule(
        self, queue: str, messages: Sequence[ServiceBusMessage], at: datetime
    ) -> list[int]:
        """Schedule ``messages`` on ``queue`` to become active at ``at`` (aware, UTC).

        Returns:
            The scheduled messages' sequence numbers, in order.

        Raises:
            azure.servicebus.exceptions.ServiceBusError: scheduling failed.
            TimeoutError: the operation took longer than ``operation_timeout``.
        """
        if not messages:
            return []
        operation = _Schedule(messages, at)
        await self._sender(queue).submit(operation)
        return await operation.done

    async def cancel(self, queue: str, sequence_numbers: Sequence[int]) -> None:
        """Cancel scheduled messages that are not active yet.

        Raises:
            azure.servicebus.exceptions.MessageNotFoundError: (or another
                ``ServiceBusError``) a message is already active or was cancelled.
            TimeoutError: the operation took longer than ``operation_timeout``.
        """
        operation = _Cancel(sequence_numbers)
        await self._sender(queue).submit(operation)
        await operation.done
