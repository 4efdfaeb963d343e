"""Correlation filters: equality on a fixed set of system properties and on user properties.

From https://learn.microsoft.com/azure/service-bus-messaging/topic-filters#correlation-filters:
every property the filter sets must equal the message's (strings case-sensitively), so the
filter is ``sys.CorrelationId = '...' AND ... AND color = 'Red'`` in SQL terms
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-filter-examples#correlation-filter-using-system-and-user-properties):
a property the message lacks fails the match, numbers compare across ``int``/``float``,
user property names are case-insensitive. A filter that sets nothing matches every message
(the docs do not say; Azure may refuse such a filter when it is created).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.rules.evaluate import read_property
from emulator.rules.message import MessageView
from emulator.rules.values import OperandError, compare

__all__ = ["CorrelationFilter"]

#: Field name -> canonical system property.
_SYSTEM_FIELDS = {
    "correlation_id": "CorrelationId",
    "message_id": "MessageId",
    "to": "To",
    "reply_to": "ReplyTo",
    "subject": "Label",
    "session_id": "SessionId",
    "reply_to_session_id": "ReplyToSessionId",
    "content_type": "ContentType",
}
#: ``Config.json`` / ARM / .NET names (any case) -> field name.
_CONFIG_NAMES = {name.casefold(): field for field, name in _SYSTEM_FIELDS.items()} | {
    "subject": "subject",
    "properties": "properties",
}


def _equal(expected: object, actual: object) -> bool:
    try:
        return compare("=", actual, expected) is True
    except OperandError:  # a type mismatch is a non-match here, not an evaluation error
        return False


@dataclass(frozen=True, slots=True)
class CorrelationFilter:
    """A ``CorrelationRuleFilter``; fields left ``None`` are not checked.

    Attributes:
        correlation_id: ``sys.CorrelationId``.
        message_id: ``sys.MessageId``.
        to: ``sys.To``.
        reply_to: ``sys.ReplyTo``.
        subject: ``sys.Label`` (``Subject`` in today's SDKs, ``Label`` in ``Config.json``).
        session_id: ``sys.SessionId``.
        reply_to_session_id: ``sys.ReplyToSessionId``.
        content_type: ``sys.ContentType``.
        properties: Application properties that must be present with these values.
    """

    correlation_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    session_id: str | None = None
    reply_to_session_id: str | None = None
    content_type: str | None = None
    properties: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> CorrelationFilter:
        """Build from a ``Config.json`` ``CorrelationFilter`` object (``CorrelationId``,
        ``Label`` or ``Subject``, ``Properties`` ..., names in any case).

        Raises:
            ValueError: An unknown key, or ``Properties`` that is not an object.
        """
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = _CONFIG_NAMES.get(str(key).casefold())
            if name is None:
                raise ValueError(f"unknown CorrelationFilter property '{key}'")
            values[name] = value
        if not isinstance(values.get("properties", {}), Mapping):
            raise ValueError("CorrelationFilter Properties must be an object")
        return cls(**values)

    def matches(self, message: MessageView) -> bool:
        """Whether every property this filter sets equals the message's."""
        for field_name, system_name in _SYSTEM_FIELDS.items():
            expected = getattr(self, field_name)
            if expected is not None and not _equal(expected, message.system.get(system_name)):
                return False
        return all(
            _equal(expected, read_property(message, "user", name))
            for name, expected in self.properties.items()
        )
