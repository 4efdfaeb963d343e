"""The retry ladder: immediate in-process retries, then delayed re-sends, then dead-letter.

Per handler (:class:`RetryPolicy`, from settings):

1. A transient failure is retried in process ``immediate_attempts`` times, with short
   exponential backoff and jitter (tenacity), while the message's processing budget
   (maximum processing time, lock renewal) allows.
2. Still failing: the message is re-sent to its queue as a *scheduled message* at
   now + exponential backoff with jitter, with application properties ``retryAttempt``
   (1, 2, ...), ``retryFirstFailedAt`` (ISO-8601 UTC), ``retryLastError`` and
   ``retryOriginalMessageId``; its message id is ``<event id>:retry:<n>`` so duplicate
   detection does not drop it (but does drop a second re-send of the same attempt), and
   the original is completed. Handlers stay idempotent on the EVENT id in the body. See
   https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing#scheduled-messages
3. After ``delayed_attempts`` re-sends, the message is dead-lettered with reason
   ``MaxRetriesExceeded`` and the last error as description.

With ``delayed_attempts = 0`` the ladder uses Service Bus redelivery instead (abandon,
delivery count + 1) and dead-letters with ``MaxRetriesExceeded`` itself on the delivery
that would otherwise reach the queue's MaxDeliveryCount (where Service Bus would write
``MaxDeliveryCountExceeded`` without the error). The same rule guards the fallback when a
re-send cannot be scheduled. See
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#maximum-delivery-count
"""

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import (
    AsyncRetrying,
    RetryCallState,  # only as the type of the state tenacity hands ``before_sleep``
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from common.durations import Duration
from consumer.errors import PermanentError, TransientError, is_transient
from contracts import ContractViolation, DeadLetterReason

T = TypeVar("T")

RETRY_ATTEMPT = "retryAttempt"
RETRY_FIRST_FAILED_AT = "retryFirstFailedAt"
RETRY_LAST_ERROR = "retryLastError"
RETRY_ORIGINAL_MESSAGE_ID = "retryOriginalMessageId"
RETRY_PROPERTIES = (
    RETRY_ATTEMPT,
    RETRY_FIRST_FAILED_AT,
    RETRY_LAST_ERROR,
    RETRY_ORIGINAL_MESSAGE_ID,
)

DESCRIPTION_LIMIT = 1024


class RetryPolicy(BaseModel):
    """How one handler retries transient failures. Durations are ``timedelta``: seconds
    (``0.2``, ``"10"``) or ISO 8601 (``"PT1H"``), as everywhere in the settings.

    Attributes:
        immediate_attempts: In-process retries after the first try (0 = none).
        immediate_initial_delay: Backoff before the first in-process retry.
        immediate_max_delay: Cap on an in-process backoff.
        delayed_attempts: Scheduled re-sends after in-process retries are used up
            (0 = use Service Bus redelivery, bounded by MaxDeliveryCount).
        delayed_initial_delay: Delay of the first re-send; doubles each attempt.
        delayed_max_delay: Cap on a re-send delay.
        delayed_jitter: Up to this much random delay added to each re-send.

    Raises:
        pydantic.ValidationError: a value is out of range, or a key is not one of the
            attributes above (e.g. ``initial_delay``), naming the accepted keys.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    immediate_attempts: int = Field(default=2, ge=0, le=20)
    immediate_initial_delay: Duration = Field(default=timedelta(seconds=0.2), ge=timedelta(0))
    immediate_max_delay: Duration = Field(default=timedelta(seconds=2), ge=timedelta(0))
    delayed_attempts: int = Field(default=5, ge=0, le=100)
    delayed_initial_delay: Duration = Field(default=timedelta(seconds=10), ge=timedelta(0))
    delayed_max_delay: Duration = Field(default=timedelta(hours=1), ge=timedelta(0))
    delayed_jitter: Duration = Field(default=timedelta(seconds=5), ge=timedelta(0))

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any) -> Any:
        # extra="forbid" alone says "Extra inputs are not permitted" without saying what
        # is: a misspelt key in CONSUMER_*_RETRY would otherwise read as a library bug.
        if isinstance(value, Mapping):
            unknown = sorted(str(key) for key in value if key not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown retry policy key(s) {', '.join(unknown)}; "
                    f"accepted keys: {', '.join(cls.model_fields)}"
                )
        return value

    def delayed_span(self) -> timedelta:
        """The shortest time from the first failed attempt to the last delayed re-send:
        the sum of the re-send delays without jitter (``timedelta(0)`` when
        ``delayed_attempts`` is 0: redeliveries come back at once)."""
        return sum(
            (
                min(self.delayed_initial_delay * 2 ** (attempt - 1), self.delayed_max_delay)
                for attempt in range(1, self.delayed_attempts + 1)
            ),
            timedelta(0),
        )

    def delayed_backoff(self, attempt: int) -> timedelta:
        """Delay before re-send number ``attempt`` (1-based): ``initial * 2**(attempt-1)``
        plus up to ``delayed_jitter``, capped at ``delayed_max_delay``."""
        return timedelta(
            seconds=exponential_backoff(
                attempt,
                initial=self.delayed_initial_delay.total_seconds(),
                maximum=self.delayed_max_delay.total_seconds(),
                jitter=self.delayed_jitter.total_seconds(),
            )
        )


def exponential_backoff(attempt: int, *, initial: float, maximum: float, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt`` (1-based) of a back-off outside tenacity.

    ``initial * 2**(attempt-1)`` plus up to ``jitter`` seconds, capped at ``maximum``:
    the formula of tenacity's ``wait_exponential_jitter``, which only answers through a
    ``RetryCallState`` (tenacity's own, built by its retry loop). Used for the delayed
    re-sends and the receivers' reconnect back-off, whose attempts outlive any one loop.
    """
    try:
        wait = float(initial * 2 ** (attempt - 1)) + random.uniform(0, jitter)
    except OverflowError:
        wait = maximum
    return max(0.0, min(wait, maximum))


async def call_with_immediate_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    budget: float,
    on_retry: Callable[[BaseException], None] | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> T:
    """Await ``call()``; retry transient failures up to ``policy.immediate_attempts`` times.

    Args:
        call: The handler invocation.
        policy: Backoff settings.
        budget: Seconds left for this message; no retry starts whose backoff would end
            past it.
        on_retry: Called with the error before each retry (counting, logging).
        keep_going: Checked before each retry; ``False`` (e.g. the lock was lost) stops.

    Raises:
        The last error, unchanged, when retries are used up or it is not transient.
    """

    started = time.monotonic()
    try:
        return await call()
    except Exception as error:
        if policy.immediate_attempts == 0 or not (is_transient(error) and keep_going()):
            raise
        first_error = error
    # The first call succeeds nearly always: build the tenacity machinery only now. Its
    # first attempt re-raises the first failure, so stop, wait, retry and before_sleep
    # see the same attempts as if tenacity had made the first call.
    replayed: list[Exception] = [first_error]

    async def attempt() -> T:
        if replayed:
            raise replayed.pop()
        return await call()

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(error)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.immediate_attempts + 1)
        | stop_before_delay(budget - (time.monotonic() - started)),
        wait=wait_exponential_jitter(
            multiplier=policy.immediate_initial_delay.total_seconds(),
            max=policy.immediate_max_delay.total_seconds(),
            jitter=policy.immediate_initial_delay.total_seconds(),
        ),
        retry=retry_if_exception(lambda error: is_transient(error) and keep_going()),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)


@dataclass(frozen=True)
class RetryState:
    """Where a message is on the ladder, read from its application properties.

    Attributes:
        attempt: 0 for the original message, n for the n-th re-send.
        first_failed_at: When the first attempt failed (aware UTC), if it has.
        original_message_id: Message id of the first message of the ladder.
    """

    attempt: int = 0
    first_failed_at: datetime | None = None
    original_message_id: str | None = None

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, Any] | None, message_id: str | None
    ) -> "RetryState":
        properties = properties or {}
        attempt = properties.get(RETRY_ATTEMPT, 0)
        first = properties.get(RETRY_FIRST_FAILED_AT)
        try:
            first_failed_at = datetime.fromisoformat(first) if isinstance(first, str) else None
        except ValueError:
            first_failed_at = None
        original = properties.get(RETRY_ORIGINAL_MESSAGE_ID)
        return cls(
            attempt=attempt if isinstance(attempt, int) and attempt >= 0 else 0,
            first_failed_at=first_failed_at,
            original_message_id=str(original) if original else message_id,
        )

    def next(self, now: datetime, error: BaseException) -> dict[str, Any]:
        """Application properties for the next re-send."""
        return {
            RETRY_ATTEMPT: self.attempt + 1,
            RETRY_FIRST_FAILED_AT: (self.first_failed_at or now).astimezone(UTC).isoformat(),
            RETRY_LAST_ERROR: describe(error)[:256],
            RETRY_ORIGINAL_MESSAGE_ID: self.original_message_id or "",
        }


@dataclass(frozen=True)
class DeadLetter:
    """The decision to move the message to its dead-letter queue.

    Attributes:
        reason: ``DeadLetterReason`` application property (e.g. ``MaxRetriesExceeded``).
        description: ``DeadLetterErrorDescription``; settlement keeps its first 1,024
            characters.

    See https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
    """

    reason: str
    description: str


@dataclass(frozen=True)
class Schedule:
    """Re-send the message at ``at`` (aware UTC) with ``properties`` and ``message_id``."""

    at: datetime
    message_id: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Abandon:
    """Give the message back to Service Bus (delivery count + 1)."""

    why: str


Decision = DeadLetter | Schedule | Abandon


def describe(error: BaseException) -> str:
    """``TypeName: message`` on one line."""
    text = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {text}"


def decide(
    error: BaseException,
    *,
    policy: RetryPolicy,
    state: RetryState,
    event_id: str,
    delivery_count: int,
    max_delivery_count: int,
    now: datetime | None = None,
) -> Decision:
    """What to do with a message whose handling failed with ``error``.

    Args:
        error: The last error (after immediate retries).
        policy: The handler's policy.
        state: The message's place on the ladder.
        event_id: The envelope id (re-send message ids derive from it).
        delivery_count: The message's delivery count (0 on first delivery).
        max_delivery_count: The queue's MaxDeliveryCount.
        now: Current time (aware UTC); defaults to the clock.
    """
    now = now or datetime.now(UTC)
    if isinstance(error, PermanentError | ContractViolation):
        return DeadLetter(str(error.reason), error.description[:DESCRIPTION_LIMIT])
    tried = state.attempt + 1
    since = (state.first_failed_at or now).astimezone(UTC).isoformat(timespec="seconds")
    exhausted = DeadLetter(
        DeadLetterReason.MAX_RETRIES_EXCEEDED.value,
        f"{tried} attempt(s) since {since}; last error: {describe(error)}"[:DESCRIPTION_LIMIT],
    )
    if policy.delayed_attempts == 0:
        return fallback(exhausted, delivery_count, max_delivery_count)
    if state.attempt >= policy.delayed_attempts:
        return exhausted
    attempt = state.attempt + 1
    at = now + policy.delayed_backoff(attempt)
    if isinstance(error, TransientError) and error.retry_after:
        at = max(at, now + timedelta(seconds=error.retry_after))
    return Schedule(at, f"{event_id}:retry:{attempt}", state.next(now, error))


def fallback(exhausted: DeadLetter, delivery_count: int, max_delivery_count: int) -> Decision:
    """Abandon, unless that delivery would reach MaxDeliveryCount: then ``exhausted``."""
    if delivery_count + 1 >= max_delivery_count:
        return exhausted
    return Abandon("retry through redelivery")
