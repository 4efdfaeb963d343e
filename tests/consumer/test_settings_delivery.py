"""Consumer settings that contradict each other fail at start-up, naming the ``CONSUMER_*``
variables (issue 21, items 6 and 11)."""

import pytest
from pydantic import ValidationError

from consumer.settings import ConsumerSettings

CONNECTION = (
    "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_SERVICEBUS_CONNECTION_STRING", CONNECTION)


def error_of(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        ConsumerSettings()
    return str(raised.value)


def test_shipped_settings_are_consistent() -> None:
    settings = ConsumerSettings()
    assert settings.delivery_claim_lease.total_seconds() == 40
    assert settings.email_retry.delayed_span().total_seconds() == 310


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"CONSUMER_EMAIL_RETRY": '{"delayed_attempts": 2}'}, "CONSUMER_EMAIL_RETRY"),
        ({"CONSUMER_WEBHOOK_RETRY__DELAYED_ATTEMPTS": "0"}, "CONSUMER_WEBHOOK_RETRY"),
        (
            {"CONSUMER_SMTP_TIMEOUT": "120", "CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS": "3"},
            "CONSUMER_EMAIL_RETRY",
        ),
    ],
)
def test_a_ladder_shorter_than_the_claim_lease_is_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    message = error_of(monkeypatch, **variables)
    assert named in message
    assert "CONSUMER_SMTP_TIMEOUT" in message
    assert "CONSUMER_WEBHOOK_TIMEOUT" in message
    assert f"{named}__DELAYED_ATTEMPTS" in message


def test_a_longer_ladder_makes_longer_timeouts_acceptable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONSUMER_SMTP_TIMEOUT", "120")
    settings = ConsumerSettings()
    assert settings.delivery_claim_lease.total_seconds() == 150


@pytest.mark.parametrize(
    ("timeout", "other"),
    [
        ("CONSUMER_SMTP_TIMEOUT", "CONSUMER_WEBHOOK_TIMEOUT"),
        ("CONSUMER_WEBHOOK_TIMEOUT", "CONSUMER_SMTP_TIMEOUT"),
    ],
)
def test_a_processing_time_shorter_than_an_attempt_is_refused(
    monkeypatch: pytest.MonkeyPatch, timeout: str, other: str
) -> None:
    message = error_of(monkeypatch, CONSUMER_MAX_PROCESSING_TIME="5", **{timeout: "10", other: "2"})
    assert f"{timeout} (10 s) exceeds CONSUMER_MAX_PROCESSING_TIME (5 s)" in message
    assert "CONSUMER_MAX_PROCESSING_TIME" in message


@pytest.mark.parametrize(
    "variables",
    [
        {"CONSUMER_WEBHOOK_RETRY": '{"initial_delay": 2}'},
        {"CONSUMER_WEBHOOK_RETRY__INITIAL_DELAY": "2"},
    ],
)
def test_unknown_retry_policy_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    message = error_of(monkeypatch, **variables)
    assert "webhook_retry" in message
    assert "initial_delay" in message
    assert "accepted keys: immediate_attempts, immediate_initial_delay" in message
    assert "delayed_initial_delay" in message
