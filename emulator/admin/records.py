"""Entity definitions made through the administration API, kept in the store as JSON.

With ``--data-dir``, every queue, topic, subscription or rule created, updated or deleted
at run time is kept (Azure keeps them too) and applied over ``Config.json`` at the next
start: a kept definition wins over the file for that entity, a kept deletion removes a
configured entity. Delete the data directory to start from ``Config.json`` alone.

The JSON is the ``Config.json`` block of the entity (PascalCase names, ISO-8601
durations), plus for subscriptions their rules with typed parameter values.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from emulator.admin.atom import decode_typed, encode_typed
from emulator.config import QueueConfig, SubscriptionConfig, TopicConfig
from emulator.durations import format_duration
from emulator.errors import EmulatorError
from emulator.namespace import EntityRecord, Namespace
from emulator.rules import (
    CorrelationFilter,
    FalseFilter,
    Rule,
    RuleFilter,
    SqlFilter,
    SqlRuleAction,
    TrueFilter,
)
from emulator.store import StoredDefinition

__all__ = ["apply_definitions", "deleted_definition", "stored_definition"]

_log = logging.getLogger(__name__)
_CORRELATION_FIELDS = (
    "correlation_id",
    "message_id",
    "to",
    "reply_to",
    "subject",
    "session_id",
    "reply_to_session_id",
    "content_type",
)
_ORDER = {"topic": 0, "queue": 1, "subscription": 2}


def _plain(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _typed(values: Any) -> list[list[str]]:
    return [[key, *encode_typed(value)] for key, value in dict(values).items()]


def _untyped(items: list[list[str]]) -> dict[str, object]:
    return {key: decode_typed(kind, text) for key, kind, text in items}


def _rule_json(rule: Rule, created_at: float) -> dict[str, Any]:
    f = rule.filter
    filter_json: dict[str, Any]
    if isinstance(f, SqlFilter):
        filter_json = {
            "Type": "Sql",
            "SqlExpression": f.sql_expression,
            "Parameters": _typed(f.parameters),
        }
    elif isinstance(f, CorrelationFilter):
        filter_json = {"Type": "Correlation", "Properties": _typed(f.properties)}
        filter_json |= {name: getattr(f, name) for name in _CORRELATION_FIELDS}
    else:
        filter_json = {"Type": "True" if isinstance(f, TrueFilter) else "False"}
    action = None
    if rule.action is not None:
        action = {
            "SqlExpression": rule.action.sql_expression,
            "Parameters": _typed(rule.action.parameters),
        }
    return {"Name": rule.name, "Filter": filter_json, "Action": action, "CreatedAt": created_at}


def _rule(data: dict[str, Any]) -> Rule:
    f = data["Filter"]
    rule_filter: RuleFilter
    if f["Type"] == "Sql":
        rule_filter = SqlFilter(f["SqlExpression"], _untyped(f["Parameters"]))
    elif f["Type"] == "Correlation":
        fields = {name: f.get(name) for name in _CORRELATION_FIELDS}
        rule_filter = CorrelationFilter(**fields, properties=_untyped(f["Properties"]))
    else:
        rule_filter = TrueFilter() if f["Type"] == "True" else FalseFilter()
    action = data.get("Action")
    sql_action = (
        None
        if action is None
        else SqlRuleAction(action["SqlExpression"], _untyped(action["Parameters"]))
    )
    return Rule(data["Name"], rule_filter, sql_action)


def stored_definition(namespace: Namespace, record: EntityRecord) -> StoredDefinition:
    """The row that keeps ``record`` (and a subscription's rules)."""
    body: dict[str, Any] = {"Config": _plain(record.config.model_dump(by_alias=True))}
    if record.kind == "subscription":
        body["Rules"] = [
            _rule_json(rule, record.rule_created_at.get(rule.name.lower(), record.created_at))
            for rule in namespace.rules(record.path)
        ]
    return StoredDefinition(
        record.path.lower(), record.kind, json.dumps(body), record.created_at, record.updated_at
    )


def deleted_definition(record: EntityRecord, now: float) -> StoredDefinition:
    """The row that records the deletion of ``record``."""
    return StoredDefinition(record.path.lower(), record.kind, None, record.created_at, now)


def _apply(namespace: Namespace, row: StoredDefinition) -> None:
    existing = namespace.records.get(row.path)
    if existing is not None and (row.body is None or existing.kind != row.kind):
        namespace.remove(row.path)
        existing = None
    if row.body is None:
        return
    body = json.loads(row.body)
    if row.kind == "queue":
        queue = QueueConfig.model_validate(body["Config"])
        if existing is None:
            namespace.add_queue(queue, row.created_at)
        else:
            namespace.update_queue(queue, row.updated_at)
    elif row.kind == "topic":
        topic = TopicConfig.model_validate(body["Config"])
        if existing is None:
            namespace.add_topic(topic, row.created_at)
        else:  # in place: the topic keeps its configured subscriptions
            namespace.update_topic(topic, row.updated_at)
    else:
        config = SubscriptionConfig.model_validate(body["Config"])
        rules = [_rule(item) for item in body.get("Rules", [])]
        if existing is not None:
            namespace.remove(row.path)
        namespace.add_subscription(row.path.rsplit("/", 2)[0], config, row.created_at, rules)
        namespace.records[row.path].rule_created_at = {
            item["Name"].lower(): float(item["CreatedAt"]) for item in body.get("Rules", [])
        }
    record = namespace.records[row.path]
    record.created_at, record.updated_at = row.created_at, row.updated_at


def apply_definitions(namespace: Namespace, rows: list[StoredDefinition]) -> None:
    """Apply kept definitions over the configured namespace (before any client connects
    and before the store restores messages): topics first, then queues, then subscriptions.

    A row that no longer applies (its topic is gone, a forwarding target is missing) is
    skipped with a warning.
    """
    with namespace.deferred_checks():
        for row in sorted(rows, key=lambda r: (_ORDER.get(r.kind, 3), r.path)):
            try:
                _apply(namespace, row)
            except (EmulatorError, ValueError, KeyError) as exc:
                _log.warning("kept definition of %s not applied: %s", row.path, exc)
