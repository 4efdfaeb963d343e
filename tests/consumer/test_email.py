"""E-mail notifications delivered to a real SMTP server (aiosmtpd) on loopback."""

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from azure.servicebus.aio import ServiceBusClient

from consumer.errors import PermanentError, TransientError
from consumer.handlers.delivery import NotificationHandler
from consumer.handlers.email import EmailSender, SmtpConfig
from consumer.handlers.templates import Templates
from consumer.retry import RetryPolicy
from consumer.runtime.routing import Route
from consumer.stores.database import Database
from consumer.stores.deliveries import DeliveryStore
from contracts import NOTIFICATION_EVENT_TYPE
from contracts.servicebus import to_servicebus_message
from tests.conftest import NOTIFICATIONS_QUEUE
from tests.consumer.conftest import (
    FAST,
    SmtpServer,
    StartWorker,
    dead_letters,
    eventually,
    notification_envelope,
    send,
)


def sender(smtp: SmtpServer) -> EmailSender:
    config = SmtpConfig(host=smtp.host, port=smtp.port, sender="noreply@example.com", timeout=5)
    return EmailSender(config, Templates())


def parsed(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_templated_email_arrives_with_escaped_html(smtp_server: SmtpServer) -> None:
    envelope = notification_envelope(
        "email",
        "grace@example.com",
        subject="Your weekly summary",
        template="weekly-digest",
        parameters={"name": "<b>Grace</b> & co", "count": 3},
        priority="high",
    )

    await sender(smtp_server)(envelope)

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["grace@example.com"]
    message = parsed(received.original_content or b"")
    assert message["Subject"] == "Your weekly summary"
    assert message["X-Event-ID"] == envelope.id
    assert message["X-Priority"] == "1 (Highest)"
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    assert "Hello <b>Grace</b> & co," in text_part.get_content()
    assert "3 new items" in text_part.get_content()
    html = html_part.get_content()
    assert "&lt;b&gt;Grace&lt;/b&gt; &amp; co" in html  # autoescaped
    assert "<b>Grace</b>" not in html


@pytest.mark.parametrize(
    "template", ["password-reset", "invoice-ready", "weekly-digest", "security-alert"]
)
async def test_demo_templates_render(smtp_server: SmtpServer, template: str) -> None:
    envelope = notification_envelope(
        "email", "ada@example.com", template=template, parameters={"name": "Ada", "count": 2}
    )
    await sender(smtp_server)(envelope)
    [received] = smtp_server.messages
    assert b"Ada" in (received.original_content or b"")


async def test_localised_template_falls_back_by_language(smtp_server: SmtpServer) -> None:
    envelope = notification_envelope(
        "email",
        "ada@example.com",
        template="password-reset",
        parameters={"name": "Ada"},
        locale="fr-CA",
    )
    await sender(smtp_server)(envelope)
    text_part = parsed(smtp_server.messages[0].original_content or b"").get_body(("plain",))
    assert text_part is not None
    assert "Bonjour Ada" in text_part.get_content()


async def test_plain_body_email(smtp_server: SmtpServer) -> None:
    envelope = notification_envelope("email", "ada@example.com", subject="Hi", body="Plain text\n")
    await sender(smtp_server)(envelope)
    message = parsed(smtp_server.messages[0].original_content or b"")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == "Plain text\n"


async def test_smtp_failures_are_classified(smtp_server: SmtpServer) -> None:
    with pytest.raises(PermanentError) as rejected:
        await sender(smtp_server)(notification_envelope("email", "nobody@example.com"))
    assert rejected.value.reason == "RecipientRejected"
    assert "550" in rejected.value.description

    with pytest.raises(TransientError, match="451"):
        await sender(smtp_server)(notification_envelope("email", "busy@example.com"))

    unreachable = EmailSender(SmtpConfig(host="127.0.0.1", port=1, timeout=2), Templates())
    with pytest.raises(TransientError):
        await unreachable(notification_envelope("email", "ada@example.com"))


async def test_template_problems_are_permanent(smtp_server: SmtpServer) -> None:
    with pytest.raises(PermanentError) as missing:
        await sender(smtp_server)(
            notification_envelope("email", "ada@example.com", template="no-such-template")
        )
    assert missing.value.reason == "TemplateNotFound"
    with pytest.raises(PermanentError) as broken:
        await sender(smtp_server)(
            notification_envelope("email", "ada@example.com", template="invoice-approved")
        )
    assert broken.value.reason == "TemplateRenderFailed"
    assert "invoice" in broken.value.description


async def test_email_through_the_worker_is_sent_once(
    sb: ServiceBusClient, db: Database, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    deliveries = DeliveryStore(db)
    handler = NotificationHandler("email", sender(smtp_server), deliveries)
    running = start_worker({NOTIFICATION_EVENT_TYPE: Route("email", handler, FAST)})
    envelope = notification_envelope(
        "email", "ada@example.com", template="invoice-ready", parameters={"name": "Ada", "count": 1}
    )
    first = to_servicebus_message(envelope)
    again = to_servicebus_message(envelope)
    again.message_id = f"{envelope.id}:again"  # a second delivery of the same event
    rejected = notification_envelope("email", "nobody@example.com")
    await send(sb, NOTIFICATIONS_QUEUE, first, again, to_servicebus_message(rejected))

    async def settled() -> bool:
        stats = running.stats(NOTIFICATIONS_QUEUE)
        return stats.completed == 2 and sum(stats.dead_lettered.values()) == 1

    await eventually(settled)
    assert len(smtp_server.messages) == 1
    record = await deliveries.get(envelope.id)
    assert record is not None
    assert record.status == "delivered"
    [dead] = await dead_letters(sb, NOTIFICATIONS_QUEUE, 1)
    assert dead.dead_letter_reason == "RecipientRejected"
    assert (await deliveries.get(rejected.id)).status == "rejected"  # type: ignore[union-attr]


async def test_busy_mailbox_is_retried_then_dead_lettered(
    sb: ServiceBusClient, db: Database, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    handler = NotificationHandler("email", sender(smtp_server), DeliveryStore(db))
    policy = RetryPolicy(
        immediate_attempts=1,
        immediate_initial_delay=0.01,
        delayed_attempts=1,
        delayed_initial_delay=0.2,
        delayed_jitter=0.05,
    )
    start_worker({NOTIFICATION_EVENT_TYPE: Route("email", handler, policy)})
    envelope = notification_envelope("email", "busy@example.com")
    await send(sb, NOTIFICATIONS_QUEUE, to_servicebus_message(envelope))

    [dead] = await dead_letters(sb, NOTIFICATIONS_QUEUE, 1)

    assert dead.message_id == f"{envelope.id}:retry:1"
    assert dead.dead_letter_reason == "MaxRetriesExceeded"
    assert "451" in (dead.dead_letter_error_description or "")
