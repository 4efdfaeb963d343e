"""Stages only subscriptions and session sources have: delayed retries that hold the
message, then abandon it; replay copies meant for another subscription.

The retry ladder re-sends a failed message as a scheduled copy (:mod:`consumer.retry`).
Two kinds of source cannot take that copy:

* **A topic subscription.** Service Bus cannot send to a subscription, only to its topic,
  and a copy sent to the topic is matched against every subscription's rules: it would
  reach every other subscription too. Microsoft answers that this is by design
  (https://github.com/Azure/azure-service-bus/issues/445). MassTransit and NServiceBus
  avoid it by reading a queue that the subscription forwards to (``ForwardTo``), so their
  delayed retries go to that queue; a worker that reads the subscription itself has to
  keep retries inside it.
* **A session source.** A copy would be enqueued behind the session's later messages,
  which would then be processed before it: the order the session exists for is lost.

So on these sources a delayed retry stays on the original message, the way Service Bus
itself retries (abandon, delivery count + 1, Azure Functions' model for Service Bus
triggers, https://learn.microsoft.com/azure/azure-functions/functions-bindings-error-pages):
:class:`RetryHold` keeps the message locked (its lock, or its session's lock, renewed)
until the retry is due, then abandons it, and Service Bus delivers it again at once. The
ladder's position is the delivery count (an abandon cannot change application
properties), and the ladder stops one short of MaxDeliveryCount so that the consumer, not
Service Bus, dead-letters it with ``MaxRetriesExceeded`` and the last error
(:func:`redelivery_ladder`).

What this costs: a held message occupies one of the source's handler slots (and, in a
session, the session), and a hold lasts at most what is left of the message's maximum
processing time (``CONSUMER_MAX_PROCESSING_TIME``, 300 s by default, more than the
default ladder's longest delay). While a downstream fails, the worker slows to the
ladder's pace rather than churning through the source; at shutdown held messages are
abandoned at once.
"""

import asyncio
import contextlib
from datetime import UTC, datetime

from azure.servicebus import ServiceBusReceivedMessage

from consumer.messages import text_properties
from consumer.retry import Abandon, RetryPolicy, RetryState, Schedule
from consumer.runtime.context import MessageContext, Next
from consumer.runtime.entities import REPLAY_TARGET
from consumer.runtime.settlement import DUPLICATE, LOCK_LOST, Outcome

_REPLAY_TARGET_KEY = REPLAY_TARGET.encode()  # the SDK hands keys back as bytes
HOLD_MARGIN = 1.0
"""Seconds before the processing deadline a hold ends, to abandon within the lock."""


def redelivery_ladder(
    message: ServiceBusReceivedMessage, policy: RetryPolicy, max_delivery_count: int
) -> tuple[RetryState, RetryPolicy]:
    """The ladder's state and policy for a source whose retries are redeliveries.

    The attempt is the delivery count (0 on first delivery); the first failure is dated
    at the message's enqueued time; the delayed attempts are capped at
    ``max_delivery_count - 1``, so the last delivery is dead-lettered by the ladder.
    """
    enqueued = message.enqueued_time_utc
    state = RetryState(
        attempt=message.delivery_count or 0,
        first_failed_at=enqueued.astimezone(UTC) if enqueued else None,
        original_message_id=str(message.message_id) if message.message_id else None,
    )
    attempts = min(policy.delayed_attempts, max(max_delivery_count - 1, 0))
    if attempts != policy.delayed_attempts:
        policy = policy.model_copy(update={"delayed_attempts": attempts})
    return state, policy


class RetryHold:
    """Stage: turns a ``Schedule`` outcome into a hold until it is due, then ``Abandon``.

    For sources whose :attr:`~consumer.runtime.config.QueueConfig.resends_retries` is
    false (see the module docstring). Other outcomes pass through unchanged. It sits
    inside the handler slot, so a held message counts against the source's concurrency.
    """

    def __init__(self) -> None:
        self._released = asyncio.Event()

    def release_all(self) -> None:
        """End every hold now, and every later one at once (shutdown)."""
        self._released.set()

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        outcome = await call_next(ctx)
        return await self.hold(outcome, ctx.deadline, ctx.lock is not None and ctx.lock.lost)

    async def hold(self, outcome: Outcome, deadline: float, lock_lost: bool) -> Outcome:
        """Wait until ``outcome`` (a ``Schedule``) is due, at most until ``deadline``
        (loop time) less :data:`HOLD_MARGIN`; then the abandon that redelivers it."""
        if not isinstance(outcome, Schedule):
            return outcome
        if lock_lost:
            return LOCK_LOST
        loop = asyncio.get_running_loop()
        due = (outcome.at - datetime.now(UTC)).total_seconds()
        wait = min(due, deadline - HOLD_MARGIN - loop.time())
        if wait > 0 and not self._released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), wait)
        return Abandon(f"redelivery for a retry due {outcome.at.isoformat(timespec='seconds')}")


class OtherSubscriptionsCopy:
    """Stage: a subscription source completes, unprocessed, a copy that ``consumer dlq
    replay`` sent to the topic for another subscription (its ``replayTarget`` names that
    one): this subscription had the original already (:mod:`consumer.dlq`)."""

    def __init__(self, subscription: str) -> None:
        self._subscription = subscription

    async def __call__(self, ctx: MessageContext, call_next: Next) -> Outcome:
        properties = ctx.message.application_properties
        if properties and (_REPLAY_TARGET_KEY in properties or REPLAY_TARGET in properties):
            target = text_properties(ctx.message).get(REPLAY_TARGET)
            if target is not None and target != self._subscription:
                return DUPLICATE
        return await call_next(ctx)
