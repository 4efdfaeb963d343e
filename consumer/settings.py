"""Consumer settings, read once per process from ``CONSUMER_*`` environment variables.

Nested values (retry policies) use ``__``: ``CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS=3``,
or JSON: ``CONSUMER_EMAIL_RETRY='{"delayed_attempts": 3}'``. The SMTP and webhook groups
(``settings.smtp``, ``settings.webhook``) keep flat names: ``CONSUMER_SMTP_HOST``,
``CONSUMER_WEBHOOK_TIMEOUT`` (:mod:`common.settings_groups`). Durations are
:data:`common.durations.Duration`: seconds (``30``, ``0.5``) or ISO 8601 (``PT10M``).
"""

from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from common.durations import Duration
from common.servicebus import ServiceBusConnection
from common.settings_groups import grouped_env_sources
from common.telemetry import TelemetrySettings
from consumer.retry import RetryPolicy
from consumer.runtime.entities import EntityPath

CLAIM_MARGIN = timedelta(seconds=30)
"""How long a delivery claim outlasts the longest attempt: time to record the outcome (a
busy SQLite write lock, a slow PostgreSQL commit) and clock skew between replicas."""


class SmtpSettings(BaseSettings):
    """``CONSUMER_SMTP_*``: the SMTP server notification e-mails are submitted to.

    Attributes:
        host / port: SMTP server.
        starttls: ``true`` requires STARTTLS, ``false`` never, unset upgrades when the
            server offers it.
        use_tls: Implicit TLS (port 465).
        username / password: SMTP AUTH credentials, if any.
        timeout: Bound on each SMTP operation, and the most one e-mail delivery attempt
            (connection to QUIT) may take.
        validate_certs: Verify the server's certificate.
    """

    model_config = SettingsConfigDict(env_prefix="CONSUMER_SMTP_", extra="ignore")

    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool | None = None
    use_tls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    timeout: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))
    validate_certs: bool = True


class WebhookSettings(BaseSettings):
    """``CONSUMER_WEBHOOK_*``: how notification webhooks are signed and sent.

    Attributes:
        secret: Signing secret (``whsec_<base64>`` or any string); required in ``live``
            mode.
        timeout: Bound on a webhook request, and the most one webhook delivery attempt
            (target check included) may take.
        allow_http: Allow plain ``http://`` URLs (tests, local receivers).
        allow_private_networks: Allow loopback, private and link-local targets.
    """

    model_config = SettingsConfigDict(env_prefix="CONSUMER_WEBHOOK_", extra="ignore")

    secret: SecretStr | None = None
    timeout: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))
    allow_http: bool = False
    allow_private_networks: bool = False


class ConsumerSettings(BaseSettings, ServiceBusConnection, TelemetrySettings):
    """Everything the consumer reads from its environment.

    Attributes:
        audit_queue: Queue of audit events.
        notifications_queue: Queue of notifications.
        audit_subscription / notifications_subscription: Read this topic subscription
            instead of the queue, by its entity path ``<topic>/Subscriptions/<name>``
            (e.g. ``audit-events/Subscriptions/siem``); exclusive with the ``*_QUEUE``
            setting. Delayed retries stay in the subscription: the message is held (lock
            renewed) until due, then abandoned, so the ladder counts deliveries and ends
            one short of MaxDeliveryCount (``consumer.runtime.redelivery``).
        audit_sessions / notifications_sessions: The source requires sessions
            (RequiresSession): process it in order per session, one message at a time
            within a session, ``max_concurrent_sessions`` sessions at once, the session
            lock renewed; retries hold the message, and its session, until due. Start-up
            stops with a one-line error when this disagrees with the entity.
        max_concurrent_sessions: Sessions processed at once per session source, each on
            its own receiver (AMQP connection); replaces the source's concurrency.
        audit_store_url: SQLAlchemy async URL of the consumer's database (audit chain,
            inbox, delivery records): SQLite file by default,
            ``postgresql+asyncpg://user@host/db`` for PostgreSQL.
        delivery_store_url: Database for delivery records, if not the audit store's.
        delivery_log_path: JSON-lines file that gets one line per delivered notification
            (``event_id``, ``channel``, ``recipient``, ``subject``, ``priority``,
            ``template``, ``accepted_at``, ``delivered_at``), exactly once each, also
            after a crash (caught up at start-up; see
            ``consumer.handlers.delivery_log``); empty string disables it.
        delivery_mode: ``log`` builds every e-mail (rendering its template) and webhook
            request exactly as ``live`` does, with the same dead-letter reasons, and
            records the delivery without sending (local runs, demo); ``live`` sends
            e-mail over SMTP and webhooks over HTTPS.
        max_message_count: Most messages asked for per receive call.
        max_wait_time: How long a receive call waits while the queue's handlers are idle;
            on session sources also how long a lane waits for a session, and how long a
            session may stay idle before it is released to other receivers.
        busy_wait_time: How long a receive call waits while handlers run.
        prefetch_count: Default SDK prefetch per receiver (0 = off).
        receivers_per_queue: Receivers (each its own AMQP connection and link) per queue;
            the SDK waits for Service Bus to confirm each settlement, so more receivers
            overlap those round trips. Unset: one per 16 of the queue's concurrency, at
            least 2 and at most 8 (``consumer.runtime.config.receivers_for``).
        audit_concurrency / notifications_concurrency: Messages processed at once (audit
            appends that run together are committed together, so this is also the
            largest audit commit group).
        audit_prefetch_count / notifications_prefetch_count: Per-queue prefetch
            (default ``prefetch_count``).
        audit_max_delivery_count / notifications_max_delivery_count: The queues'
            MaxDeliveryCount (keep equal to the entity's; the retry ladder uses it).
        max_processing_time: How long a message may be worked on, lock renewal included.
        receiver_recycle_after_idle: Time without a message after which a receiver is
            recreated (0 = never).
        shutdown_grace_period: Time from SIGTERM to exit: in-flight handlers finish
            or are cancelled and abandoned. Keep below the platform's (Container Apps
            gives 30 s).
        audit_retry / email_retry / webhook_retry: Retry ladder per handler.
        inbox_retention: How long idempotency records are kept; at least
            ``duplicate_detection_window``.
        duplicate_detection_window: The queues' DuplicateDetectionHistoryTimeWindow.
        email_from: From address of notification e-mails.
        smtp: ``CONSUMER_SMTP_*`` (:class:`SmtpSettings`).
        webhook: ``CONSUMER_WEBHOOK_*`` (:class:`WebhookSettings`).
        template_dir: Extra template directory searched before the built-in one.
        health_host / health_port: Probe endpoint bind address; port 0 disables it.
        dlq_depth_interval: Time between dead-letter counts for the
            ``servicebus_events.dlq.depth`` gauge (0 = off).
        dlq_depth_limit: Most dead letters peeked per queue per count.
        outcome_flush_interval: Time between writes of the outcome counters (completed,
            dead-lettered by reason, retried) to the ``consumer_outcomes`` table of the
            audit store, as counts per UTC minute summed over every replica; the console
            charts them. Also written once at shutdown.
        outcome_retention: How long those per-minute counts are kept (at least an hour;
            pruned hourly).
        (telemetry and logging fields: see ``common.telemetry.TelemetrySettings``)

    Start-up checks (``pydantic.ValidationError`` naming the ``CONSUMER_*`` variables):
    ``CONSUMER_MAX_PROCESSING_TIME`` must fit one delivery attempt (the SMTP and webhook
    timeouts), and the e-mail and webhook retry ladders must span the delivery claim lease
    (:attr:`delivery_claim_lease`), or a notification redelivered after a consumer was
    killed mid-delivery would be dead-lettered while the dead consumer's claim still
    blocks it.
    """

    model_config = SettingsConfigDict(
        env_prefix="CONSUMER_", env_nested_delimiter="__", extra="ignore"
    )

    audit_queue: str = "audit"
    notifications_queue: str = "notifications"
    audit_subscription: str | None = None
    notifications_subscription: str | None = None
    audit_sessions: bool = False
    notifications_sessions: bool = False
    max_concurrent_sessions: int = Field(default=8, ge=1, le=100)
    audit_store_url: str = "sqlite+aiosqlite:///audit.db"
    delivery_store_url: str | None = None
    delivery_log_path: Path | None = Path("notifications.jsonl")
    delivery_mode: Literal["log", "live"] = "log"

    max_message_count: int = Field(default=50, ge=1, le=1000)
    max_wait_time: Duration = Field(default=timedelta(seconds=2), gt=timedelta(0))
    busy_wait_time: Duration = Field(default=timedelta(seconds=0.2), gt=timedelta(0))
    prefetch_count: int = Field(default=0, ge=0)
    receivers_per_queue: int | None = Field(default=None, ge=1, le=16)
    audit_concurrency: int = Field(default=32, ge=1, le=1000)
    notifications_concurrency: int = Field(default=16, ge=1, le=1000)
    audit_prefetch_count: int | None = Field(default=None, ge=0)
    notifications_prefetch_count: int | None = Field(default=None, ge=0)
    audit_max_delivery_count: int = Field(default=10, ge=1)
    notifications_max_delivery_count: int = Field(default=10, ge=1)
    max_processing_time: Duration = Field(default=timedelta(seconds=300), gt=timedelta(0))
    receiver_recycle_after_idle: Duration = Field(default=timedelta(seconds=300), ge=timedelta(0))
    shutdown_grace_period: Duration = Field(default=timedelta(seconds=25), gt=timedelta(0))

    audit_retry: RetryPolicy = RetryPolicy()
    email_retry: RetryPolicy = RetryPolicy()
    webhook_retry: RetryPolicy = RetryPolicy()
    inbox_retention: Duration = timedelta(days=7)
    duplicate_detection_window: Duration = timedelta(minutes=10)

    email_from: str = "notifications@example.com"
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)

    template_dir: Path | None = None
    dlq_depth_interval: Duration = Field(default=timedelta(seconds=60), ge=timedelta(0))
    dlq_depth_limit: int = Field(default=10_000, ge=1)
    outcome_flush_interval: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))
    outcome_retention: Duration = Field(default=timedelta(days=7), ge=timedelta(hours=1))
    health_host: str = "0.0.0.0"
    health_port: int = Field(default=8081, ge=0, le=65535)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``smtp`` and ``webhook`` read ``CONSUMER_SMTP_*`` / ``CONSUMER_WEBHOOK_*``."""
        return grouped_env_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )

    @field_validator(
        "delivery_log_path", "audit_subscription", "notifications_subscription", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("audit_subscription", "notifications_subscription")
    @classmethod
    def _subscription_path(cls, value: str | None) -> str | None:
        if value is not None and not EntityPath.parse(value).is_subscription:
            raise ValueError(
                f"{value!r} is not a subscription path <topic>/Subscriptions/<subscription>"
            )
        return value

    def source(self, kind: Literal["audit", "notifications"]) -> tuple[str, str]:
        """The entity path a source is read from, and the variable that names it."""
        subscription = (
            self.audit_subscription if kind == "audit" else self.notifications_subscription
        )
        if subscription is not None:
            return EntityPath.parse(subscription).path, f"CONSUMER_{kind.upper()}_SUBSCRIPTION"
        queue = self.audit_queue if kind == "audit" else self.notifications_queue
        return queue, f"CONSUMER_{kind.upper()}_QUEUE"

    @property
    def delivery_claim_lease(self) -> timedelta:
        """How long a notification's delivery claim holds off other deliveries of it.

        One attempt is cut off at its channel's timeout, so a claim only needs to outlive
        the longer of ``smtp.timeout`` and ``webhook.timeout``, plus ``CLAIM_MARGIN`` (30 s)
        to record the outcome. A consumer killed mid-delivery blocks the event this long.
        """
        return max(self.smtp.timeout, self.webhook.timeout) + CLAIM_MARGIN

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for kind in ("audit", "notifications"):
            if f"{kind}_queue" in self.model_fields_set and getattr(self, f"{kind}_subscription"):
                raise ValueError(
                    f"set CONSUMER_{kind.upper()}_QUEUE or CONSUMER_{kind.upper()}_SUBSCRIPTION, "
                    "not both: a source is a queue or a subscription"
                )
        if self.inbox_retention < self.duplicate_detection_window:
            raise ValueError(
                "CONSUMER_INBOX_RETENTION must be at least CONSUMER_DUPLICATE_DETECTION_WINDOW, "
                "or a redelivered duplicate could be processed twice"
            )
        if self.delivery_mode == "live" and self.webhook.secret is None:
            raise ValueError(
                "CONSUMER_WEBHOOK_SECRET is required when CONSUMER_DELIVERY_MODE is live"
            )
        for variable, timeout in (
            ("CONSUMER_SMTP_TIMEOUT", self.smtp.timeout),
            ("CONSUMER_WEBHOOK_TIMEOUT", self.webhook.timeout),
        ):
            if timeout > self.max_processing_time:
                raise ValueError(
                    f"{variable} ({timeout.total_seconds():g} s) exceeds "
                    f"CONSUMER_MAX_PROCESSING_TIME ({self.max_processing_time.total_seconds():g}"
                    " s): one delivery attempt would not fit in a message's processing time"
                )
        lease = self.delivery_claim_lease.total_seconds()
        margin = CLAIM_MARGIN.total_seconds()
        for variable, policy in (
            ("CONSUMER_EMAIL_RETRY", self.email_retry),
            ("CONSUMER_WEBHOOK_RETRY", self.webhook_retry),
        ):
            span = policy.delayed_span().total_seconds()
            if span < lease:
                raise ValueError(
                    f"{variable} re-sends span {span:g} s, less than the {lease:g} s delivery "
                    "claim lease (the longer of CONSUMER_SMTP_TIMEOUT and "
                    f"CONSUMER_WEBHOOK_TIMEOUT, plus {margin:g} s): a notification "
                    "redelivered after a consumer died mid-delivery would be dead-lettered "
                    "while the dead consumer's claim still blocks it; raise "
                    f"{variable}__DELAYED_ATTEMPTS or {variable}__DELAYED_INITIAL_DELAY, or "
                    "lower the timeouts"
                )
        return self
