"""Helpers for tests: run an emulator on an ephemeral port for the duration of a block.

Example::

    from emulator.testing import queue_config, run_emulator

    with run_emulator(queue_config("orders", LockDuration="PT1S")) as sb:
        client = ServiceBusClient.from_connection_string(sb.connection_string)
        admin = ServiceBusAdministrationClient.from_connection_string(
            sb.connection_string, connection_verify=sb.ca_file
        )

The emulator runs on a background thread of the test process rather than in a subprocess:
start-up is a few tens of milliseconds (no interpreter start, no imports), there is no
process to leak when a test is killed, and an internal error surfaces as an exception when
the block exits. Only the reactor thread touches proton objects. To exercise the real CLI
process, start ``python -m emulator`` yourself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from emulator.config import EmulatorConfig, load_config, parse_config
from emulator.durations import format_duration
from emulator.runtime import DEFAULT_KEY, DEFAULT_KEY_NAME, Emulator
from emulator.server import ServerLimits

__all__ = [
    "EmulatorHandle",
    "combine_configs",
    "correlation_rule",
    "queue_config",
    "run_emulator",
    "sql_rule",
    "subscription_config",
    "topic_config",
]

#: The project's configuration, used when ``run_emulator`` gets no config.
PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "servicebus.json"

_PROPERTY_NAMES = {
    "max_delivery_count": "MaxDeliveryCount",
    "lock_duration": "LockDuration",
    "default_message_time_to_live": "DefaultMessageTimeToLive",
    "dead_lettering_on_message_expiration": "DeadLetteringOnMessageExpiration",
    "requires_duplicate_detection": "RequiresDuplicateDetection",
    "duplicate_detection_history_time_window": "DuplicateDetectionHistoryTimeWindow",
    "requires_session": "RequiresSession",
    "max_message_size_in_kilobytes": "MaxMessageSizeInKilobytes",
    "forward_to": "ForwardTo",
    "forward_dead_lettered_messages_to": "ForwardDeadLetteredMessagesTo",
}


@dataclass(frozen=True)
class EmulatorHandle:
    """A running emulator.

    Attributes:
        connection_string: For ``ServiceBusClient.from_connection_string``.
        host: Host clients connect to.
        port: Ephemeral TCP port (AMQP, and HTTPS for the administration API).
        emulator: The underlying :class:`~emulator.runtime.Emulator`.
        ca_file: The emulator's TLS certificate (PEM), for
            ``ServiceBusAdministrationClient.from_connection_string(...,
            connection_verify=ca_file)``.
    """

    connection_string: str
    host: str
    port: int
    emulator: Emulator
    ca_file: str = ""


def _properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, value in properties.items():
        json_key = _PROPERTY_NAMES.get(key, key)
        props[json_key] = format_duration(value) if isinstance(value, timedelta) else value
    return props


def _namespace(queues: list[Any], topics: list[Any]) -> dict[str, Any]:
    namespace: dict[str, Any] = {"Name": "sbemulatorns", "Queues": queues}
    if topics:
        namespace["Topics"] = topics
    return {"UserConfig": {"Namespaces": [namespace]}}


def queue_config(name: str, *more_names: str, **properties: Any) -> dict[str, Any]:
    """A config dict with queues ``name, *more_names`` sharing ``properties``.

    Property names may be the JSON names (``LockDuration="PT1S"``) or snake_case
    (``lock_duration=timedelta(seconds=1)``); ``timedelta`` values become ISO-8601 strings.

    Example: ``queue_config("q", LockDuration="PT1S", MaxDeliveryCount=2)``.
    """
    props = _properties(properties)
    queues = [{"Name": queue, "Properties": dict(props)} for queue in (name, *more_names)]
    return _namespace(queues, [])


def sql_rule(name: str, expression: str, action: str | None = None) -> dict[str, Any]:
    """A ``Rules[]`` item with a SQL filter (and a SQL action if given)."""
    props: dict[str, Any] = {"FilterType": "Sql", "SqlFilter": {"SqlExpression": expression}}
    if action is not None:
        props["Action"] = {"SqlExpression": action}
    return {"Name": name, "Properties": props}


def correlation_rule(name: str, action: str | None = None, **fields: Any) -> dict[str, Any]:
    """A ``Rules[]`` item with a correlation filter: ``correlation_rule("r", Label="x",
    Properties={"color": "red"})``."""
    props: dict[str, Any] = {"FilterType": "Correlation", "CorrelationFilter": fields}
    if action is not None:
        props["Action"] = {"SqlExpression": action}
    return {"Name": name, "Properties": props}


def subscription_config(name: str, *rules: Mapping[str, Any], **properties: Any) -> dict[str, Any]:
    """A ``Subscriptions[]`` item: ``rules`` from :func:`sql_rule` / :func:`correlation_rule`
    (none: ``$Default``), properties as for :func:`queue_config`."""
    item: dict[str, Any] = {"Name": name, "Properties": _properties(properties)}
    if rules:
        item["Rules"] = [dict(rule) for rule in rules]
    return item


def topic_config(
    name: str, *subscriptions: str | Mapping[str, Any], **properties: Any
) -> dict[str, Any]:
    """A config dict with topic ``name`` and its subscriptions (names, or items from
    :func:`subscription_config`), topic ``properties`` as for :func:`queue_config`.

    Example: ``topic_config("events", "all", subscription_config("red", sql_rule("r",
    "color = 'red'")), RequiresDuplicateDetection=True)``.
    """
    subs = [
        {"Name": sub, "Properties": {}} if isinstance(sub, str) else dict(sub)
        for sub in subscriptions
    ]
    topic = {"Name": name, "Properties": _properties(properties), "Subscriptions": subs}
    return _namespace([], [topic])


def combine_configs(*configs: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the queues and topics of several config dicts (e.g. from :func:`queue_config`
    and :func:`topic_config`) into one."""
    queues: list[Any] = []
    topics: list[Any] = []
    for config in configs:
        for namespace in config["UserConfig"]["Namespaces"]:
            queues.extend(namespace.get("Queues", []))
            topics.extend(namespace.get("Topics", []))
    return _namespace(queues, topics)


def _resolve(config: Mapping[str, Any] | Path | str | EmulatorConfig | None) -> EmulatorConfig:
    if isinstance(config, EmulatorConfig):
        return config
    if config is None:
        return load_config(PROJECT_CONFIG)
    if isinstance(config, (str, Path)):
        return load_config(config)
    return parse_config(config)


@contextmanager
def run_emulator(
    config: Mapping[str, Any] | Path | None = None,
    *,
    host: str = "127.0.0.1",
    key_name: str = DEFAULT_KEY_NAME,
    key: str = DEFAULT_KEY,
    data_dir: str | os.PathLike[str] | None = None,
    limits: ServerLimits | None = None,
) -> Iterator[EmulatorHandle]:
    """Start an emulator on an ephemeral port; stop it when the block exits.

    Args:
        config: A ``Config.json``-shaped dict, a path to such a file, or ``None`` for the
            project's ``config/servicebus.json`` (queues ``audit`` and ``notifications``).
        host: Interface to listen on.
        key_name: ``SharedAccessKeyName`` expected from clients.
        key: ``SharedAccessKey`` expected from clients.
        data_dir: Keep the queues in this directory (SQLite) instead of memory; a later
            emulator with the same ``data_dir`` finds them again.
        limits: Protection limits (frame size, idle and handshake timeouts ...).

    Yields:
        The running emulator's handle.

    Raises:
        emulator.config.ConfigError: invalid configuration.
        RuntimeError: on exit, if the emulator's reactor thread died with an error.
    """
    emulator = Emulator(
        _resolve(config),
        host=host,
        port=0,
        key_name=key_name,
        key=key,
        data_dir=data_dir,
        limits=limits,
    )
    emulator.start()
    try:
        yield EmulatorHandle(
            connection_string=emulator.connection_string,
            host=emulator.host,
            port=emulator.port,
            emulator=emulator,
            ca_file=str(emulator.ca_file),
        )
    finally:
        emulator.stop()
    if emulator.failure is not None:
        raise RuntimeError("the emulator failed while running") from emulator.failure
