"""The neutral view of a message that rules read and actions rewrite, and the ``sys.`` names.

System property names follow the broker-property table of
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-messages-payloads
(``BrokeredMessage`` names such as ``Label``); the names of today's SDKs
(``ServiceBusMessage.Subject``, ``ScheduledEnqueueTime`` ...) are accepted as aliases, as
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-filter-examples#filter-on-system-properties
asks filters to use them. Property names are case-insensitive in filters and actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "SETTABLE_SYSTEM_PROPERTIES",
    "SYSTEM_PROPERTIES",
    "MessageView",
    "canonical_system_property",
    "find_user_key",
]

#: Canonical system property names, the keys of :attr:`MessageView.system`.
SYSTEM_PROPERTIES: frozenset[str] = frozenset(
    {
        "ContentType",
        "CorrelationId",
        "DeadLetterSource",
        "DeliveryCount",
        "EnqueuedSequenceNumber",
        "EnqueuedTimeUtc",
        "ExpiresAtUtc",
        "ForcePersistence",
        "Label",
        "LockedUntilUtc",
        "LockToken",
        "MessageId",
        "PartitionKey",
        "ReplyTo",
        "ReplyToSessionId",
        "ScheduledEnqueueTimeUtc",
        "SequenceNumber",
        "SessionId",
        "Size",
        "State",
        "TimeToLive",
        "To",
        "ViaPartitionKey",
    }
)

#: Names from ``Azure.Messaging.ServiceBus.ServiceBusMessage`` and its received form.
_ALIASES = {
    "Subject": "Label",
    "ScheduledEnqueueTime": "ScheduledEnqueueTimeUtc",
    "EnqueuedTime": "EnqueuedTimeUtc",
    "ExpiresAt": "ExpiresAtUtc",
    "LockedUntil": "LockedUntilUtc",
    "TransactionPartitionKey": "ViaPartitionKey",
}

_BY_FOLDED = {name.casefold(): name for name in SYSTEM_PROPERTIES} | {
    alias.casefold(): name for alias, name in _ALIASES.items()
}

#: System properties a ``SET``/``REMOVE`` action may change, with the Python type each holds
#: (the broker-assigned ones are read-only in the payloads table).
SETTABLE_SYSTEM_PROPERTIES: Mapping[str, str] = MappingProxyType(
    {
        "ContentType": "str",
        "CorrelationId": "str",
        "ForcePersistence": "bool",
        "Label": "str",
        "MessageId": "str",
        "PartitionKey": "str",
        "ReplyTo": "str",
        "ReplyToSessionId": "str",
        "ScheduledEnqueueTimeUtc": "datetime",
        "SessionId": "str",
        "TimeToLive": "timedelta",
        "To": "str",
        "ViaPartitionKey": "str",
    }
)


def canonical_system_property(name: str) -> str | None:
    """The canonical name for a ``sys.`` property name (any case, alias or not), or ``None``."""
    return _BY_FOLDED.get(name.casefold())


def find_user_key(user: Mapping[str, object], name: str) -> str | None:
    """The key of ``user`` that ``name`` refers to (exact first, then case-insensitive)."""
    if name in user:
        return name
    folded = name.casefold()
    for key in user:
        if key.casefold() == folded:
            return key
    return None


@dataclass(frozen=True, slots=True)
class MessageView:
    """What rules see of a message: its system and its application (user) properties.

    The topic builds one per message it routes and turns the view an action returns back
    into its own message type; the rule engine never sees a body.

    Attributes:
        system: Set system properties by canonical name (:data:`SYSTEM_PROPERTIES`): ``str``
            for ids, ``Label`` and ``ContentType``; timezone-aware ``datetime`` (UTC) for
            ``*TimeUtc``; ``timedelta`` for ``TimeToLive``; ``int`` for counts and sequence
            numbers. A property that is not set is absent (``IS NULL`` is then true).
        user: Application properties as sent (``str``, ``int``, ``float``, ``bool``,
            ``None``, ``datetime``, ``uuid.UUID`` ...).
    """

    system: Mapping[str, object] = field(default_factory=dict)
    user: Mapping[str, object] = field(default_factory=dict)
