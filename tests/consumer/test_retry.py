"""Retry decisions and backoff, without Service Bus."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from consumer.errors import PermanentError, TransientError
from consumer.retry import (
    Abandon,
    DeadLetter,
    RetryPolicy,
    RetryState,
    Schedule,
    call_with_immediate_retries,
    decide,
)
from contracts import ContractViolation, DeadLetterReason

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(
    delayed_attempts=3, delayed_initial_delay=10, delayed_jitter=2, delayed_max_delay=25
)


def test_backoff_doubles_with_bounded_jitter_and_cap() -> None:
    for _ in range(50):
        assert timedelta(seconds=10) <= POLICY.delayed_backoff(1) <= timedelta(seconds=12)
        assert timedelta(seconds=20) <= POLICY.delayed_backoff(2) <= timedelta(seconds=22)
        assert POLICY.delayed_backoff(3) <= timedelta(seconds=25)


def test_transient_failure_schedules_the_next_attempt() -> None:
    decision = decide(
        TransientError("down"),
        policy=POLICY,
        state=RetryState(),
        event_id="e1",
        delivery_count=0,
        max_delivery_count=10,
        now=NOW,
    )
    assert isinstance(decision, Schedule)
    assert decision.message_id == "e1:retry:1"
    assert decision.properties["retryAttempt"] == 1
    assert decision.properties["retryFirstFailedAt"] == NOW.isoformat()
    assert decision.properties["retryOriginalMessageId"] == ""  # none known in this state
    assert NOW + timedelta(seconds=10) <= decision.at <= NOW + timedelta(seconds=12)


def test_retry_after_is_a_floor() -> None:
    decision = decide(
        TransientError("429", retry_after=120),
        policy=POLICY,
        state=RetryState(),
        event_id="e1",
        delivery_count=0,
        max_delivery_count=10,
        now=NOW,
    )
    assert isinstance(decision, Schedule)
    assert decision.at >= NOW + timedelta(seconds=120)


def test_last_attempt_dead_letters_with_the_error() -> None:
    state = RetryState(
        attempt=3, first_failed_at=NOW - timedelta(minutes=5), original_message_id="e1"
    )
    decision = decide(
        ValueError("still down"),
        policy=POLICY,
        state=state,
        event_id="e1",
        delivery_count=0,
        max_delivery_count=10,
        now=NOW,
    )
    assert decision == DeadLetter(
        "MaxRetriesExceeded",
        "4 attempt(s) since 2025-12-31T23:55:00+00:00; last error: ValueError: still down",
    )


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("RecipientRejected", "no such user"),
        ContractViolation(DeadLetterReason.SCHEMA_VALIDATION_FAILED, "data.actor: missing"),
    ],
)
def test_permanent_failures_dead_letter_with_their_reason(error: Exception) -> None:
    decision = decide(
        error,
        policy=POLICY,
        state=RetryState(attempt=1),
        event_id="e1",
        delivery_count=0,
        max_delivery_count=10,
    )
    assert isinstance(decision, DeadLetter)
    assert decision.reason in ("RecipientRejected", "SchemaValidationFailed")


def test_redelivery_mode_respects_max_delivery_count() -> None:
    redelivery = RetryPolicy(delayed_attempts=0)
    common = {
        "policy": redelivery,
        "state": RetryState(),
        "event_id": "e1",
        "max_delivery_count": 3,
    }
    assert isinstance(decide(OSError("x"), delivery_count=0, **common), Abandon)  # type: ignore[arg-type]
    assert isinstance(decide(OSError("x"), delivery_count=1, **common), Abandon)  # type: ignore[arg-type]
    last = decide(OSError("x"), delivery_count=2, **common)  # type: ignore[arg-type]
    assert isinstance(last, DeadLetter)
    assert last.reason == "MaxRetriesExceeded"


def test_state_round_trips_through_properties() -> None:
    state = RetryState.from_properties({}, "m-1")
    properties = state.next(NOW, TransientError("boom"))
    again = RetryState.from_properties(properties, "m-1:retry:1")
    assert again == RetryState(attempt=1, first_failed_at=NOW, original_message_id="m-1")


async def test_immediate_retries_stop_at_the_budget_and_on_permanent_errors() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    policy = RetryPolicy(immediate_attempts=5, immediate_initial_delay=0.001)
    assert await call_with_immediate_retries(flaky, policy, budget=10) == "ok"
    assert len(calls) == 3

    async def permanent() -> None:
        calls.append(1)
        raise PermanentError("X", "no")

    calls.clear()
    with pytest.raises(PermanentError):
        await call_with_immediate_retries(permanent, policy, budget=10)
    assert len(calls) == 1

    async def down() -> None:
        calls.append(1)
        raise TimeoutError("slow")

    calls.clear()
    slow_policy = RetryPolicy(immediate_attempts=5, immediate_initial_delay=5)
    with pytest.raises(TimeoutError):
        await call_with_immediate_retries(down, slow_policy, budget=1)  # 5 s backoff > 1 s budget
    assert len(calls) == 1


async def test_immediate_retries_report_each_retry_and_stop_when_told() -> None:
    errors: list[BaseException] = []
    calls: list[int] = []

    async def twice_down() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise TimeoutError(f"slow {len(calls)}")
        return "ok"

    policy = RetryPolicy(immediate_attempts=3, immediate_initial_delay=0.001)
    result = await call_with_immediate_retries(
        twice_down, policy, budget=10, on_retry=errors.append
    )
    assert result == "ok"
    assert [str(e) for e in errors] == ["slow 1", "slow 2"]

    calls.clear()
    with pytest.raises(TimeoutError):
        await call_with_immediate_retries(twice_down, policy, budget=10, keep_going=lambda: False)
    assert len(calls) == 1

    calls.clear()
    no_retries = RetryPolicy(immediate_attempts=0)
    with pytest.raises(TimeoutError):
        await call_with_immediate_retries(twice_down, no_retries, budget=10)
    assert len(calls) == 1


def test_unknown_policy_keys_are_refused_naming_the_accepted_ones() -> None:
    with pytest.raises(ValidationError) as raised:
        RetryPolicy.model_validate({"initial_delay": 2, "delayed_attempts": 3})
    message = str(raised.value)
    assert "unknown retry policy key(s) initial_delay" in message
    assert "accepted keys: immediate_attempts, immediate_initial_delay" in message


def test_delayed_span_sums_the_capped_delays_without_jitter() -> None:
    policy = RetryPolicy(delayed_attempts=4, delayed_initial_delay=10, delayed_max_delay=25)
    assert policy.delayed_span() == timedelta(seconds=10 + 20 + 25 + 25)
    assert RetryPolicy(delayed_attempts=0).delayed_span() == timedelta(0)
