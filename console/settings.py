"""What the console reads from its environment (``CONSOLE_*``)."""

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from common.durations import Duration
from common.env_lists import split_list
from common.servicebus import ServiceBusConnection
from common.telemetry import TelemetrySettings
from console.apikeys import ConsoleApiKey, parse_console_api_keys

AuthMode = Literal["api-key", "easyauth"]


class ConsoleSettings(BaseSettings, ServiceBusConnection, TelemetrySettings):
    """Everything the console reads from its environment.

    Service Bus: ``CONSOLE_SERVICEBUS_CONNECTION_STRING`` or
    ``CONSOLE_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE`` (see
    ``common.servicebus.ServiceBusConnection``); telemetry and logging fields: see
    ``common.telemetry.TelemetrySettings``.

    Attributes:
        host: Interface the HTTP server binds (``0.0.0.0`` in a container).
        port: HTTP port.
        audit_queue: The audit queue's name.
        notifications_queue: The notifications queue's name.
        outbox_database_url: The producer's outbox (SQLAlchemy async URL, read only); unset:
            the console cannot find events by id or key, nor show the backlog.
        audit_store_url: The consumer's database (audit chain, inbox, deliveries, outcomes
            per minute of every replica, charted on the flow page); unset: no processing
            status, no chain verification, and actions are not audited, so replay and
            purge are refused.
        consumer_status_url: The consumer's ``/status`` (e.g.
            ``http://127.0.0.1:8081/status``), one process's counters: the outcome charts'
            source only when ``CONSOLE_AUDIT_STORE_URL`` is unset or unreadable; both unset: no
            outcome charts.
        auth: ``api-key`` (sign-in form, ``CONSOLE_API_KEYS``) or ``easyauth`` (Azure
            Container Apps built-in authentication with Microsoft Entra ID: the
            ``X-MS-CLIENT-PRINCIPAL*`` headers are trusted; only behind it).
        api_keys: ``name:sha256hex[:role]`` entries, comma-separated or a JSON list; role
            ``reader`` (default) or ``operator``. Make one with
            ``python -m console new-api-key NAME --role operator``.
        operator_role: The Entra ID app role (``roles`` claim) that may replay and purge.
        session_secret: Signs the session cookie; random per process when unset (sessions
            end at restart and are not shared by replicas).
        session_max_age: How long a sign-in lasts.
        secure_cookies: Send the session cookie over HTTPS only (on in Azure).
        appinsights_trace_url: Link to one trace in Application Insights, with
            ``{trace_id}`` where the operation id goes; unset: the local trace view command.
        trace_files: Telemetry files (``*_TELEMETRY_FILE``) named in that command.
        sample_interval: Time between two samples of the flow charts.
        history: How far back the charts go.
        peek_limit: Most messages peeked per queue or DLQ to count or search them.
    """

    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    audit_queue: str = Field("audit", min_length=1)
    notifications_queue: str = Field("notifications", min_length=1)
    outbox_database_url: str | None = None
    audit_store_url: str | None = None
    consumer_status_url: str | None = None
    auth: AuthMode = "api-key"
    api_keys: Annotated[tuple[ConsoleApiKey, ...], NoDecode] = ()
    operator_role: str = Field("Console.Operator", min_length=1)
    session_secret: SecretStr | None = None
    session_max_age: Duration = Field(timedelta(hours=8), gt=timedelta(0))
    secure_cookies: bool = False
    appinsights_trace_url: str | None = None
    trace_files: Annotated[tuple[Path, ...], NoDecode] = ()
    sample_interval: Duration = Field(timedelta(seconds=5), gt=timedelta(0))
    history: Duration = Field(timedelta(minutes=15), gt=timedelta(0))
    peek_limit: int = Field(1000, ge=1, le=100_000)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        return parse_console_api_keys(split_list(value))

    @field_validator("trace_files", mode="before")
    @classmethod
    def _parse_trace_files(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("appinsights_trace_url")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{trace_id}" not in value:
            raise ValueError("must contain {trace_id} where the trace id goes")
        return value

    @property
    def queues(self) -> tuple[str, str]:
        """The queues the console watches."""
        return (self.audit_queue, self.notifications_queue)
