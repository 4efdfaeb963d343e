"""Producer settings, read once per process from ``PRODUCER_*`` environment variables.

Durations are ``timedelta`` and accept seconds (``"30"``, ``"0.5"``) or ISO 8601
(``"PT30S"``, ``"P7D"``) in the environment.
"""

import os
import socket
import uuid
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AnyHttpUrl, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.durations import Duration
from common.env_lists import split_list
from common.servicebus import ServiceBusConnection
from common.telemetry import TelemetrySettings
from contracts.servicebus import STANDARD_TIER_MAX_MESSAGE_SIZE
from producer.apikeys import ApiKeyHash, parse_api_keys

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///producer-outbox.db"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class ProducerSettings(BaseSettings, ServiceBusConnection, TelemetrySettings):
    """Everything the producer reads from its environment.

    Attributes:
        audit_queue: Queue for audit events (``PRODUCER_AUDIT_QUEUE``).
        notifications_queue: Queue for notifications (``PRODUCER_NOTIFICATIONS_QUEUE``).
        source: CloudEvents ``source`` prefix; a caller's events get
            ``<source>/clients/<key name>`` (API key) or ``<source>/apps/<client id>``
            (Entra ID token).
        host: Interface the HTTP server binds (``0.0.0.0`` in a container).
        port: HTTP port.
        (telemetry and logging fields: see ``common.telemetry.TelemetrySettings``)
        database_url: SQLAlchemy *async* URL of the outbox database:
            ``sqlite+aiosqlite:///path.db`` (default ``producer-outbox.db`` in the working
            directory, WAL mode) or ``postgresql+asyncpg://user@host/db``.
        migrate_on_startup: Apply the outbox's Alembic migrations when the app starts
            (otherwise run ``python -m producer migrate`` first).
        api_keys: Accepted API keys as ``name:sha256hex`` entries, comma-separated or a
            JSON list (``PRODUCER_API_KEYS``). Make an entry with
            ``python -m producer new-api-key NAME``.
        entra_tenant_id: Microsoft Entra tenant (GUID) whose access tokens are accepted;
            unset disables bearer tokens.
        entra_audiences: Accepted ``aud`` values (application ID URI and/or client id).
        entra_jwks_url: Override of the tenant's signing-key document (default
            ``https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys``).
        entra_required_role: App role the token must carry in ``roles`` (403 otherwise);
            unset accepts any valid token for the audience.
        max_request_bytes: Largest request body; larger ones get 413.
        max_header_bytes: Largest request header section in bytes, counted as on the wire
            (``name: value`` plus CRLF per field; the request line is not counted);
            larger ones get 431. Default 16 KiB, as Node.js (``--max-http-header-size``);
            nginx's default is 8 KiB per line, 32 KiB in all.
        max_header_count: Most request header fields; more get 431. Default 100, as
            Apache httpd (``LimitRequestFields``).
        max_message_bytes: Largest Service Bus message (body and properties, AMQP-encoded)
            an event may become; larger events get 413. Default: the Standard tier's
            256 KiB; raise it for Premium entities configured for large messages.
        publish_batch_size: Most outbox rows the relay claims and sends per cycle (one or
            more ``ServiceBusMessageBatch`` sends).
        senders_per_queue: Senders (AMQP links on one connection) per queue; with two, one
            batch is prepared while the previous one waits for Service Bus to accept it.
        servicebus_operation_timeout: Bound on one send/schedule/cancel including the
            SDK's own retries.
        group_commit_linger: Longest a request waits for concurrent requests to join its
            outbox transaction (group commit), and only while fewer are waiting than the
            last group held; 0 commits at once. Larger groups cost less CPU per request
            (``producer.outbox.group_commit``); the default is long enough for the
            cohorts that concurrent clients split into to merge into one group
            (docs/benchmarks/findings.md §14.11). The late messages once seen with it
            were receivers holding link credit while idle, fixed in the consumer
            (``consumer.runtime.credit``; docs/benchmarks/findings.md, section 13).
        relay_poll_interval: How often an idle relay looks for pending rows that no
            notification told it about (other replicas' leases that expired, restarts).
        relay_lease: How long a claimed row is reserved for the claiming replica; a crashed
            replica's rows are taken over after this. Keep it well below the queues'
            duplicate detection window (``PT10M`` in ``config/servicebus.json``) so that a
            re-send after a takeover is still recognised as a duplicate.
        relay_backoff_initial / relay_backoff_max: Exponential backoff (with jitter) after a
            failed relay cycle.
        outbox_retention: Published and cancelled rows are deleted this long after.
        idempotency_retention: ``Idempotency-Key`` records are kept this long.
        prune_interval: How often old rows are deleted.
        readiness_max_backlog: ``/readyz`` fails when more rows than this wait to be
            published.
        readiness_requires_servicebus: ``/readyz`` fails while Service Bus sends fail; set
            false to keep accepting into the outbox during a Service Bus outage.
        shutdown_grace: From SIGTERM to exit, everything included: in-flight requests and
            publishes, releasing outbox leases, closing Service Bus, flushing telemetry;
            what is unpublished stays in the outbox. Keep below the platform's (Container
            Apps gives 30 s).
        instance_id: Lease owner name of this process (host-pid-random by default).
    """

    model_config = SettingsConfigDict(env_prefix="PRODUCER_", extra="ignore")

    audit_queue: str = "audit"
    notifications_queue: str = "notifications"
    source: str = "/producer"
    host: str = "127.0.0.1"
    port: int = 8000

    database_url: str = DEFAULT_DATABASE_URL
    migrate_on_startup: bool = True

    api_keys: Annotated[tuple[ApiKeyHash, ...], NoDecode] = ()
    entra_tenant_id: str | None = None
    entra_audiences: Annotated[tuple[str, ...], NoDecode] = ()
    entra_jwks_url: AnyHttpUrl | None = None
    entra_required_role: str | None = None

    max_request_bytes: int = Field(1_048_576, gt=0)
    max_header_bytes: int = Field(16_384, ge=1024, le=1_048_576)
    max_header_count: int = Field(100, ge=10, le=1000)
    max_message_bytes: int = Field(STANDARD_TIER_MAX_MESSAGE_SIZE, gt=0)
    publish_batch_size: int = Field(500, ge=1, le=4500)
    senders_per_queue: int = Field(2, ge=1, le=8)
    servicebus_operation_timeout: Duration = Field(timedelta(seconds=30), gt=timedelta(0))
    group_commit_linger: Duration = Field(
        timedelta(milliseconds=5), ge=timedelta(0), le=timedelta(seconds=1)
    )
    relay_poll_interval: Duration = Field(timedelta(seconds=2), gt=timedelta(0))
    relay_lease: Duration = Field(timedelta(seconds=60), gt=timedelta(0))
    relay_backoff_initial: Duration = Field(timedelta(seconds=0.5), gt=timedelta(0))
    relay_backoff_max: Duration = Field(timedelta(seconds=30), gt=timedelta(0))
    outbox_retention: Duration = timedelta(days=7)
    idempotency_retention: Duration = timedelta(days=1)
    prune_interval: Duration = Field(timedelta(minutes=5), gt=timedelta(0))
    readiness_max_backlog: int = Field(10_000, ge=0)
    readiness_requires_servicebus: bool = True
    shutdown_grace: Duration = Field(timedelta(seconds=10), ge=timedelta(0))
    instance_id: str = Field(default_factory=_default_instance_id, min_length=1, max_length=200)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        return parse_api_keys(split_list(value))

    @field_validator("entra_audiences", mode="before")
    @classmethod
    def _parse_audiences(cls, value: Any) -> Any:
        return split_list(value)

    @property
    def entra_enabled(self) -> bool:
        """Whether bearer tokens are accepted (a tenant and an audience are configured)."""
        return self.entra_tenant_id is not None and bool(self.entra_audiences)
