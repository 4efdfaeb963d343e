"""Bad settings: one line naming the environment variables to fix, exit 2, no traceback.

The CLIs run as real processes with a bad environment; a few finer points of the
formatter are checked in process against the real settings classes.
"""

import subprocess
import sys

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from common.settings_errors import describe_settings_error
from consumer.settings import ConsumerSettings
from producer.settings import ProducerSettings
from tools.processes import ROOT

# Nothing listens on this port; the settings are rejected before anything connects.
_BUS = (
    "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
)


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "env", "line"),
    [
        (
            "producer",
            {"PRODUCER_SERVICEBUS_CONNECTION_STRING": _BUS, "PRODUCER_PORT": "abc"},
            "producer: invalid settings: PRODUCER_PORT: Input should be a valid integer, "
            "unable to parse string as an integer (got 'abc')",
        ),
        (
            "producer",
            {},
            "producer: invalid settings: set exactly one of "
            "PRODUCER_SERVICEBUS_CONNECTION_STRING or "
            "PRODUCER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE",
        ),
        (
            "consumer",
            {
                "CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS,
                "CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS": "three",
            },
            "consumer: error: invalid settings: CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS: Input "
            "should be a valid integer, unable to parse string as an integer (got 'three')",
        ),
        (
            "consumer",
            {"CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS, "CONSUMER_WEBHOOK_RETRY": "{oops"},
            "consumer: error: invalid settings: CONSUMER_WEBHOOK_RETRY: not valid JSON "
            "(Expecting property name enclosed in double quotes at character 1)",
        ),
        (
            "consumer",
            {"CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS, "CONSUMER_DELIVERY_MODE": "live"},
            "consumer: error: invalid settings: CONSUMER_WEBHOOK_SECRET is required when "
            "CONSUMER_DELIVERY_MODE is live",
        ),
        (
            "consumer",
            {"CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS, "CONSUMER_SMTP_PORT": "abc"},
            "consumer: error: invalid settings: CONSUMER_SMTP_PORT: Input should be a valid "
            "integer, unable to parse string as an integer (got 'abc')",
        ),
        (
            "consumer",
            {"CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS, "CONSUMER_WEBHOOK_TIMEOUT": "abc"},
            "consumer: error: invalid settings: CONSUMER_WEBHOOK_TIMEOUT: Input should be a "
            "valid timedelta, invalid digit in duration (got 'abc')",
        ),
    ],
    ids=[
        "producer-type",
        "producer-model-check",
        "consumer-nested",
        "consumer-json",
        "consumer-model-check",
        "consumer-smtp-group",
        "consumer-webhook-group-duration",
    ],
)
def test_a_bad_environment_is_one_line_naming_the_variable(
    module: str, env: dict[str, str], line: str
) -> None:
    result = _run(module, env)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]
    assert "Traceback" not in result.stderr


def test_several_errors_are_counted_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "PRODUCER_SERVICEBUS_CONNECTION_STRING": _BUS,
        "PRODUCER_PORT": "abc",
        "PRODUCER_PUBLISH_BATCH_SIZE": "0",
        "PRODUCER_RELAY_LEASE": "-1",
        "PRODUCER_SENDERS_PER_QUEUE": "99",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        ProducerSettings()

    text = describe_settings_error(caught.value, ProducerSettings, environ=environ, limit=2)

    assert "\n" not in text
    assert text.startswith("4 errors: PRODUCER_PORT: ")
    assert "; PRODUCER_PUBLISH_BATCH_SIZE: Input should be greater than or equal to 1" in text
    assert text.endswith("; and 2 more")
    assert ": :" not in text


def test_a_nested_value_set_as_json_names_the_variable_and_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environ = {
        "CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS,
        "CONSUMER_AUDIT_RETRY": '{"immediate_attempts": -1}',
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        ConsumerSettings()

    text = describe_settings_error(caught.value, ConsumerSettings, environ=environ)

    assert text == (
        "CONSUMER_AUDIT_RETRY.immediate_attempts: Input should be greater than or equal to 0 "
        "(got -1)"
    )


def test_secret_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS,
        "CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": "bus.servicebus.windows.net",
        "CONSUMER_SMTP_PORT": "70000",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        ConsumerSettings()

    text = describe_settings_error(caught.value, ConsumerSettings, environ=environ)

    assert "CONSUMER_SMTP_PORT: Input should be less than or equal to 65535 (got '70000')" in text
    assert "SharedAccessKey" not in text


def test_an_undecodable_nested_value_is_described(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_SERVICEBUS_CONNECTION_STRING", _BUS)
    monkeypatch.setenv("CONSUMER_EMAIL_RETRY", "[1")
    with pytest.raises(SettingsError) as caught:
        ConsumerSettings()

    text = describe_settings_error(caught.value, ConsumerSettings)

    assert text.startswith("CONSUMER_EMAIL_RETRY: not valid JSON (")


def test_a_duration_out_of_bounds_shows_its_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "CONSUMER_SERVICEBUS_CONNECTION_STRING": _BUS,
        "CONSUMER_SHUTDOWN_GRACE_PERIOD": "PT0S",
        "CONSUMER_SMTP_TIMEOUT": "-5",
        "CONSUMER_SMTP_PASSWORD": "hunter2",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        ConsumerSettings()

    text = describe_settings_error(caught.value, ConsumerSettings, environ=environ)

    assert text == (
        "2 errors: CONSUMER_SHUTDOWN_GRACE_PERIOD: Input should be greater than 0 seconds "
        "(got 0 s); CONSUMER_SMTP_TIMEOUT: Input should be greater than 0 seconds (got -5 s)"
    )
