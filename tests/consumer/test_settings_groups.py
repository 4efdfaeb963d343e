"""``settings.smtp`` / ``settings.webhook`` read the flat ``CONSUMER_SMTP_*`` /
``CONSUMER_WEBHOOK_*`` variables, and every consumer duration is a ``timedelta`` read from
seconds or ISO 8601 (issue 24, item 4)."""

from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError

from consumer.settings import ConsumerSettings, SmtpSettings, WebhookSettings

CONNECTION = (
    "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_SERVICEBUS_CONNECTION_STRING", CONNECTION)


def test_defaults_are_unchanged() -> None:
    settings = ConsumerSettings()
    assert settings.smtp == SmtpSettings(
        host="localhost",
        port=25,
        starttls=None,
        use_tls=False,
        username=None,
        password=None,
        timeout=timedelta(seconds=10),
        validate_certs=True,
    )
    assert settings.webhook == WebhookSettings(
        secret=None, timeout=timedelta(seconds=10), allow_http=False, allow_private_networks=False
    )
    durations = (
        settings.max_wait_time,
        settings.busy_wait_time,
        settings.max_processing_time,
        settings.receiver_recycle_after_idle,
        settings.shutdown_grace_period,
        settings.dlq_depth_interval,
        settings.inbox_retention,
        settings.duplicate_detection_window,
    )
    assert [d.total_seconds() for d in durations] == [2, 0.2, 300, 300, 25, 60, 604800, 600]


def test_flat_variables_fill_the_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "CONSUMER_SMTP_HOST": "mail.example.com",
        "CONSUMER_SMTP_PORT": "465",
        "CONSUMER_SMTP_STARTTLS": "false",
        "CONSUMER_SMTP_USE_TLS": "true",
        "CONSUMER_SMTP_USERNAME": "ada",
        "CONSUMER_SMTP_PASSWORD": "hunter2",
        "CONSUMER_SMTP_TIMEOUT": "20",
        "CONSUMER_SMTP_VALIDATE_CERTS": "false",
        "consumer_webhook_secret": "whsec_c2VjcmV0",  # names are case-insensitive
        "CONSUMER_WEBHOOK_TIMEOUT": "PT15S",
        "CONSUMER_WEBHOOK_ALLOW_HTTP": "1",
        "CONSUMER_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    }.items():
        monkeypatch.setenv(name, value)

    settings = ConsumerSettings()

    smtp, webhook = settings.smtp, settings.webhook
    assert (smtp.host, smtp.port, smtp.starttls, smtp.use_tls) == (
        "mail.example.com",
        465,
        False,
        True,
    )
    assert (smtp.username, smtp.password) == ("ada", SecretStr("hunter2"))
    assert (smtp.timeout, smtp.validate_certs) == (timedelta(seconds=20), False)
    assert webhook.secret == SecretStr("whsec_c2VjcmV0")
    assert webhook.timeout == timedelta(seconds=15)
    assert (webhook.allow_http, webhook.allow_private_networks) == (True, True)
    assert settings.delivery_claim_lease == timedelta(seconds=50)


def test_groups_have_one_spelling_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CONSUMER_SMTP__HOST`` and ``CONSUMER_SMTP`` (JSON) are not read: no second name."""
    monkeypatch.setenv("CONSUMER_SMTP__HOST", "nested.example.com")
    monkeypatch.setenv("CONSUMER_WEBHOOK", '{"allow_http": true}')
    monkeypatch.setenv("CONSUMER_SMTP_PORT", "2525")

    settings = ConsumerSettings()

    assert (settings.smtp.host, settings.smtp.port) == ("localhost", 2525)
    assert settings.webhook.allow_http is False


def test_webhook_retry_is_not_a_webhook_group_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_WEBHOOK_RETRY__DELAYED_ATTEMPTS", "9")
    settings = ConsumerSettings()
    assert settings.webhook_retry.delayed_attempts == 9
    assert settings.webhook == WebhookSettings()


def test_groups_are_given_in_code_as_models_or_dicts() -> None:
    settings = ConsumerSettings(
        smtp=SmtpSettings(host="smtp.test", timeout=timedelta(seconds=3)),
        webhook={"allow_http": True, "timeout": 4},
        max_wait_time=0.5,
    )
    assert (settings.smtp.host, settings.smtp.timeout) == ("smtp.test", timedelta(seconds=3))
    assert settings.webhook.allow_http is True
    assert settings.webhook.timeout == timedelta(seconds=4)
    assert settings.max_wait_time == timedelta(milliseconds=500)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0.5", 0.5), ("30", 30), ("PT30S", 30), ("PT1M30S", 90), ("1e1", 10)],
)
def test_durations_read_seconds_or_iso_8601(
    monkeypatch: pytest.MonkeyPatch, value: str, seconds: float
) -> None:
    monkeypatch.setenv("CONSUMER_MAX_WAIT_TIME", value)
    monkeypatch.setenv("CONSUMER_SHUTDOWN_GRACE_PERIOD", value)
    settings = ConsumerSettings()
    assert settings.max_wait_time.total_seconds() == seconds
    assert settings.shutdown_grace_period.total_seconds() == seconds


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONSUMER_MAX_WAIT_TIME", "0"),
        ("CONSUMER_BUSY_WAIT_TIME", "PT0S"),
        ("CONSUMER_MAX_PROCESSING_TIME", "-1"),
        ("CONSUMER_SHUTDOWN_GRACE_PERIOD", "0"),
        ("CONSUMER_RECEIVER_RECYCLE_AFTER_IDLE", "-1"),
        ("CONSUMER_DLQ_DEPTH_INTERVAL", "-1"),
        ("CONSUMER_SMTP_TIMEOUT", "0"),
        ("CONSUMER_WEBHOOK_TIMEOUT", "0"),
    ],
)
def test_duration_bounds_are_kept(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        ConsumerSettings()


@pytest.mark.parametrize("field", ["receiver_recycle_after_idle", "dlq_depth_interval"])
def test_zero_still_means_off(monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    monkeypatch.setenv(f"CONSUMER_{field.upper()}", "0")
    assert getattr(ConsumerSettings(), field) == timedelta(0)
