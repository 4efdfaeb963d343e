"""Emulator configuration: the official Service Bus emulator's ``Config.json`` shape.

Only queues are supported. A file looks like::

    {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": [
        {"Name": "audit", "Properties": {"LockDuration": "PT1M", "MaxDeliveryCount": 10}}
    ]}], "Logging": {"Type": "Console"}}}

Defaults follow Azure (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-queues-topics-subscriptions
and the emulator's https://learn.microsoft.com/azure/service-bus-messaging/test-locally-with-service-bus-emulator):
``MaxDeliveryCount`` 10, ``LockDuration`` ``PT1M``, ``DefaultMessageTimeToLive`` effectively
infinite, ``DuplicateDetectionHistoryTimeWindow`` ``PT10M``, ``MaxMessageSizeInKilobytes`` 256.
Unlike Azure, any positive duration is accepted (Azure's minimum duplicate detection window
is 20 s), so that tests can use short windows.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from emulator.durations import INFINITE, parse_duration

__all__ = [
    "ConfigError",
    "EmulatorConfig",
    "NamespaceConfig",
    "QueueConfig",
    "QueueProperties",
    "load_config",
    "parse_config",
]

#: Azure's upper bound for ``LockDuration``.
MAX_LOCK_DURATION = timedelta(minutes=5)

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9])?$")


class ConfigError(Exception):
    """The configuration could not be read or is invalid. ``str(error)`` is one readable line."""


def _to_duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


#: A ``timedelta`` written in JSON as an ISO-8601 duration string (``"PT1M"``).
Duration = Annotated[timedelta, BeforeValidator(_to_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class QueueProperties(_Model):
    """A queue's ``Properties`` block. Field aliases are the JSON (PascalCase) names.

    Durations are ``timedelta``; in JSON they are ISO-8601 strings. Behaviour they control:
    locks https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement,
    dead-lettering https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues,
    duplicate detection https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection.
    """

    max_delivery_count: int = Field(10, alias="MaxDeliveryCount", ge=1, le=2_147_483_647)
    lock_duration: Duration = Field(timedelta(minutes=1), alias="LockDuration")
    default_message_time_to_live: Duration = Field(INFINITE, alias="DefaultMessageTimeToLive")
    dead_lettering_on_message_expiration: bool = Field(
        False, alias="DeadLetteringOnMessageExpiration"
    )
    requires_duplicate_detection: bool = Field(False, alias="RequiresDuplicateDetection")
    duplicate_detection_history_time_window: Duration = Field(
        timedelta(minutes=10), alias="DuplicateDetectionHistoryTimeWindow"
    )
    requires_session: bool = Field(False, alias="RequiresSession")
    #: Largest message accepted, in KiB. Azure: 256 on Standard, up to 102400 on Premium
    #: (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-quotas).
    max_message_size_in_kilobytes: int = Field(
        256, alias="MaxMessageSizeInKilobytes", ge=1, le=102400
    )
    # Accepted so that official emulator configs load; forwarding itself is not supported.
    forward_to: str | None = Field(None, alias="ForwardTo")
    forward_dead_lettered_messages_to: str | None = Field(
        None, alias="ForwardDeadLetteredMessagesTo"
    )

    @field_validator("lock_duration")
    @classmethod
    def _lock_duration_range(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > MAX_LOCK_DURATION:
            raise ValueError("must be greater than 0 and at most PT5M")
        return value

    @field_validator("default_message_time_to_live", "duplicate_detection_history_time_window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0")
        return value

    @field_validator("forward_to", "forward_dead_lettered_messages_to")
    @classmethod
    def _no_forwarding(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("auto-forwarding is not supported by this emulator")
        return None

    @property
    def time_to_live_is_infinite(self) -> bool:
        """Whether ``DefaultMessageTimeToLive`` means "never expires"."""
        return self.default_message_time_to_live >= INFINITE


class QueueConfig(_Model):
    """One queue: its ``Name`` (letters, digits, ``.``, ``-``, ``_``, ``/``; case-insensitive)."""

    name: str = Field(alias="Name")
    properties: QueueProperties = Field(default_factory=QueueProperties, alias="Properties")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _QUEUE_NAME.match(value):
            raise ValueError(
                f"invalid queue name {value!r}: use letters, digits, '.', '-', '_', '/', "
                "starting and ending with a letter or digit"
            )
        return value


class NamespaceConfig(_Model):
    """A namespace. Topics are not supported; an empty ``Topics`` list is accepted."""

    name: str = Field("sbemulatorns", alias="Name")
    queues: tuple[QueueConfig, ...] = Field((), alias="Queues")
    topics: tuple[Any, ...] = Field((), alias="Topics")

    @field_validator("topics")
    @classmethod
    def _no_topics(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if value:
            raise ValueError("topics are not supported by this emulator (queues only)")
        return value


class _Logging(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _UserConfig(_Model):
    namespaces: tuple[NamespaceConfig, ...] = Field(alias="Namespaces", min_length=1)
    logging: _Logging | None = Field(None, alias="Logging")


class EmulatorConfig(_Model):
    """The whole file: ``{"UserConfig": {"Namespaces": [...], "Logging": {...}}}``.

    Queues of all namespaces share one endpoint, so queue names must be unique across them
    (case-insensitively, as in Azure).
    """

    user_config: _UserConfig = Field(alias="UserConfig")

    @field_validator("user_config")
    @classmethod
    def _unique_queue_names(cls, value: _UserConfig) -> _UserConfig:
        seen: set[str] = set()
        for namespace in value.namespaces:
            for queue in namespace.queues:
                key = queue.name.lower()
                if key in seen:
                    raise ValueError(f"duplicate queue name {queue.name!r}")
                seen.add(key)
        return value

    @property
    def queues(self) -> tuple[QueueConfig, ...]:
        """All queues of all namespaces, in file order."""
        return tuple(q for ns in self.user_config.namespaces for q in ns.queues)


def _format_validation_error(error: ValidationError) -> str:
    errors = error.errors()
    # An invalid item can also fail its container (e.g. "at least 1 item"); report leaves.
    leaves = [
        e
        for e in errors
        if not any(o is not e and o["loc"][: len(e["loc"])] == e["loc"] for o in errors)
    ]
    first = leaves[0]
    location = ".".join(str(part) for part in first["loc"]) or "(root)"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(leaves) - 1} more)" if len(leaves) > 1 else ""
    return f"{location}: {message}{more}"


def parse_config(data: Any) -> EmulatorConfig:
    """Validate an already-parsed JSON document.

    Raises:
        ConfigError: with a one-line message naming the first invalid field.
    """
    try:
        return EmulatorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_config(path: str | Path) -> EmulatorConfig:
    """Read and validate a ``Config.json`` file.

    Raises:
        ConfigError: file missing/unreadable, not JSON, or invalid; the message is one line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
