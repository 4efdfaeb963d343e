"""What the stages of :mod:`consumer.runtime.pipeline` share: one message's context, and
the shape of a stage."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from azure.servicebus import ServiceBusReceivedMessage

from consumer.runtime import routing
from consumer.runtime.channel import ReceiverChannel
from consumer.runtime.lock import MessageLockTimer
from consumer.runtime.settlement import Outcome
from contracts import EventEnvelope


@dataclass(slots=True)
class MessageContext:
    """One received message on its way through the stages.

    Attributes:
        message: The peek-locked message.
        channel: The receiver it came from; it is settled there.
        task: The message's own task (cancelled at its deadline or at shutdown).
        started: ``time.monotonic()`` when processing began.
        deadline: Loop time when the maximum processing time ends (``LockRenewal``).
        lock: Its lock-renewal timer (``LockRenewal``).
        envelope: The decoded envelope (``Decode``).
        route: The handler and its retry policy (``Route``).
    """

    message: ServiceBusReceivedMessage
    channel: ReceiverChannel
    task: asyncio.Task[Any]
    started: float
    deadline: float = 0.0
    lock: MessageLockTimer | None = None
    envelope: EventEnvelope | None = None
    route: routing.Route | None = None


Next = Callable[[MessageContext], Awaitable[Outcome]]
"""The rest of the path after a stage."""
HandlerNext = Callable[[MessageContext], Awaitable[bool | None]]
"""The handler call below :class:`RetryDecision`: its result (``False``: duplicate)."""


class Stage(Protocol):
    """One step of the path: its part, around ``await call_next(ctx)``."""

    def __call__(self, ctx: MessageContext, call_next: Next) -> Awaitable[Outcome]: ...
