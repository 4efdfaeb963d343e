"""Emulator configuration: the official Service Bus emulator's ``Config.json`` shape.

Queues, topics, subscriptions and rules (their blocks: :mod:`emulator.config_entities`).
A file looks like::

    {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns",
        "Queues": [{"Name": "audit", "Properties": {"LockDuration": "PT1M"}}],
        "Topics": [{"Name": "events", "Subscriptions": [{"Name": "siem", "Rules": [
            {"Name": "errors", "Properties": {"FilterType": "Sql",
             "SqlFilter": {"SqlExpression": "severity = 'error'"}}}]}]}]
    }], "Logging": {"Type": "Console"}}}

Defaults follow Azure (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-queues-topics-subscriptions
and the emulator's https://learn.microsoft.com/azure/service-bus-messaging/test-locally-with-service-bus-emulator):
``MaxDeliveryCount`` 10, ``LockDuration`` ``PT1M``, ``DefaultMessageTimeToLive`` effectively
infinite, ``DuplicateDetectionHistoryTimeWindow`` ``PT10M``, ``MaxMessageSizeInKilobytes`` 256.
Unlike Azure, any positive duration is accepted (Azure's minimum duplicate detection window
is 20 s), so that tests can use short windows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emulator.config_entities import (
    MAX_LOCK_DURATION,
    ConfigModel,
    QueueConfig,
    QueueProperties,
    RuleConfig,
    SubscriptionConfig,
    SubscriptionProperties,
    TopicConfig,
    TopicProperties,
)

__all__ = [
    "MAX_LOCK_DURATION",
    "ConfigError",
    "EmulatorConfig",
    "NamespaceConfig",
    "QueueConfig",
    "QueueProperties",
    "RuleConfig",
    "SubscriptionConfig",
    "SubscriptionProperties",
    "TopicConfig",
    "TopicProperties",
    "load_config",
    "parse_config",
]


class ConfigError(Exception):
    """The configuration could not be read or is invalid. ``str(error)`` is one readable line."""


class NamespaceConfig(ConfigModel):
    """A namespace: its queues and topics."""

    name: str = Field("sbemulatorns", alias="Name")
    queues: tuple[QueueConfig, ...] = Field((), alias="Queues")
    topics: tuple[TopicConfig, ...] = Field((), alias="Topics")


class _Logging(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _UserConfig(ConfigModel):
    namespaces: tuple[NamespaceConfig, ...] = Field(alias="Namespaces", min_length=1)
    logging: _Logging | None = Field(None, alias="Logging")


class EmulatorConfig(ConfigModel):
    """The whole file: ``{"UserConfig": {"Namespaces": [...], "Logging": {...}}}``.

    Entities of all namespaces share one endpoint, so queue and topic names must be unique
    across them (case-insensitively, as in Azure, where queues and topics share a
    namespace's names). A ``ForwardTo`` or ``ForwardDeadLetteredMessagesTo`` target must be
    a configured queue or topic ("The destination entity must exist at the time the source
    entity is created", https://learn.microsoft.com/azure/service-bus-messaging/service-bus-auto-forwarding).
    """

    user_config: _UserConfig = Field(alias="UserConfig")

    @field_validator("user_config")
    @classmethod
    def _unique_names_and_targets(cls, value: _UserConfig) -> _UserConfig:
        seen: dict[str, str] = {}
        queues = [q for ns in value.namespaces for q in ns.queues]
        topics = [t for ns in value.namespaces for t in ns.topics]
        for kind, name in [("queue", q.name) for q in queues] + [("topic", t.name) for t in topics]:
            key = name.lower()
            if key in seen:
                other = "" if seen[key] == kind else f" (also a {seen[key]})"
                raise ValueError(f"duplicate {kind} name {name!r}{other}")
            seen[key] = kind
        for topic in topics:
            for subscription in topic.subscriptions:
                path = f"{topic.name}/Subscriptions/{subscription.name}"
                if path.lower() in seen:
                    raise ValueError(
                        f"subscription {path!r} has the name of a {seen[path.lower()]}"
                    )
        sources: list[tuple[str, Any]] = [(f"queue {q.name!r}", q.properties) for q in queues]
        sources += [
            (f"subscription {t.name}/Subscriptions/{s.name}", s.properties)
            for t in topics
            for s in t.subscriptions
        ]
        for where, props in sources:
            for field, target in (
                ("ForwardTo", props.forward_to),
                ("ForwardDeadLetteredMessagesTo", props.forward_dead_lettered_messages_to),
            ):
                if target is not None and target.lower() not in seen:
                    raise ValueError(
                        f"{where}: {field} {target!r} is not a configured queue or topic"
                    )
        return value

    @property
    def queues(self) -> tuple[QueueConfig, ...]:
        """All queues of all namespaces, in file order."""
        return tuple(q for ns in self.user_config.namespaces for q in ns.queues)

    @property
    def topics(self) -> tuple[TopicConfig, ...]:
        """All topics of all namespaces, in file order."""
        return tuple(t for ns in self.user_config.namespaces for t in ns.topics)


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
