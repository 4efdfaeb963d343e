"""E-mail notifications over SMTP (aiosmtplib), rendered from Jinja2 templates.

Failure classes follow SMTP reply codes (RFC 5321 section 4.2.1): 4yz is transient,
5yz permanent. A 5yz refusal of the recipient dead-letters with ``RecipientRejected``,
another 5yz (e.g. for the content) with ``EmailRejected``. Connection failures, timeouts
and authentication failures (our configuration, not the message's fault) are transient.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib
from opentelemetry import trace
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind

from consumer.errors import ConsumerDeadLetterReason, PermanentError, TransientError
from consumer.handlers.templates import Templates
from contracts import DeadLetterReason, NotificationEnvelope, NotificationPriority

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("servicebus_events.consumer")

_PRIORITY_HEADER = {
    NotificationPriority.HIGH: "1 (Highest)",
    NotificationPriority.LOW: "5 (Lowest)",
}


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to submit mail. ``timeout`` is in seconds.

    ``start_tls``: ``True`` requires STARTTLS, ``False`` never uses it, ``None`` upgrades
    when the server offers it. ``use_tls`` is implicit TLS (port 465).
    """

    host: str = "localhost"
    port: int = 25
    sender: str = "notifications@example.com"
    start_tls: bool | None = None
    use_tls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    validate_certs: bool = True


class EmailSender:
    """Builds and submits one e-mail per notification.

    Args:
        config: SMTP settings.
        templates: Template renderer.
        dry_run: Build the message exactly as for sending (rendering its template, with
            the same errors) and stop before SMTP: the ``log`` delivery mode.
    """

    def __init__(self, config: SmtpConfig, templates: Templates, *, dry_run: bool = False) -> None:
        self._config = config
        self._templates = templates
        self._dry_run = dry_run

    def build(self, envelope: NotificationEnvelope) -> EmailMessage:
        """The MIME message: plain text, plus an HTML alternative when the template has one.

        Raises:
            PermanentError: the template is unknown or fails to render.
        """
        data = envelope.data
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = data.recipient
        message["Subject"] = data.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(idstring=envelope.id.replace("-", ""))
        message["X-Event-ID"] = envelope.id
        if envelope.correlationid:
            message["X-Correlation-ID"] = envelope.correlationid
        if data.priority in _PRIORITY_HEADER:
            message["X-Priority"] = _PRIORITY_HEADER[data.priority]
        if data.template is None:
            message.set_content(data.body or "")
            return message
        rendered = self._templates.render(
            data.template,
            dict(data.parameters),
            locale=getattr(data, "locale", None),
            subject=data.subject,
            recipient=data.recipient,
        )
        message.set_content(rendered.text)
        if rendered.html is not None:
            message.add_alternative(rendered.html, subtype="html")
        return message

    async def __call__(self, envelope: NotificationEnvelope) -> None:
        """Send the e-mail (or, with ``dry_run``, only build it).

        Raises:
            PermanentError: ``RecipientRejected``, ``EmailRejected``, template errors.
            TransientError: 4yz replies, connection failures, timeouts, auth failures.
        """
        message = self.build(envelope)
        if self._dry_run:
            logger.debug("delivery mode log: e-mail %s built, not sent", envelope.id)
            return
        config = self._config
        # No OpenTelemetry instrumentation exists for aiosmtplib: one client span per send.
        with tracer.start_as_current_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={SERVER_ADDRESS: config.host, SERVER_PORT: config.port},
        ):
            await self._send(envelope, message)

    async def _send(self, envelope: NotificationEnvelope, message: EmailMessage) -> None:
        config = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                timeout=config.timeout,
                use_tls=config.use_tls,
                start_tls=config.start_tls,
                validate_certs=config.validate_certs,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            if 500 <= refused.code < 600:
                raise PermanentError(
                    DeadLetterReason.RECIPIENT_REJECTED,
                    f"SMTP {refused.code} for {refused.recipient}: {refused.message}",
                ) from exc
            raise TransientError(f"SMTP {refused.code}: {refused.message}") from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise TransientError(f"SMTP authentication failed ({exc.code})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentError(
                    ConsumerDeadLetterReason.EMAIL_REJECTED, f"SMTP {exc.code}: {exc.message}"
                ) from exc
            raise TransientError(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP {config.host}:{config.port}: {exc}") from exc
        # The address is personal data: INFO logs keep only its domain.
        domain = envelope.data.recipient.rpartition("@")[2]
        logger.info("e-mail %s sent to a recipient at %s", envelope.id, domain)
