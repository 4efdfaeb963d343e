"""Parsing AMQP link addresses into what they name.

Clients address entities as ``amqps://host:port/<queue>`` (the SDK uses the ``amqps``
scheme even without TLS), sub-queues as ``<queue>/$DeadLetterQueue``, request/response nodes
as ``<entity>/$management`` and the claims-based-security node as ``$cbs``. See
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Address", "Node", "parse_address"]

DEAD_LETTER_SUFFIX = "$deadletterqueue"
MANAGEMENT_SUFFIX = "$management"
CBS_NODE = "$cbs"


class Node(enum.Enum):
    """What an address points at."""

    ENTITY = "entity"
    MANAGEMENT = "management"
    CBS = "cbs"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address.

    Attributes:
        node: Entity, its management node, or ``$cbs``.
        entity_path: Lower-cased entity path (``"audit"`` or ``"audit/$deadletterqueue"``);
            empty for ``$cbs`` and the namespace-level ``$management``.
        queue: Lower-cased queue name; empty for ``$cbs``.
        dead_letter: Whether the path names the ``$DeadLetterQueue`` sub-queue.
    """

    node: Node
    entity_path: str
    queue: str
    dead_letter: bool


def _path(address: str) -> str:
    if "://" in address:
        return urlsplit(address).path
    return address


def parse_address(address: str) -> Address:
    """Parse a link address.

    Entity names are case-insensitive in Service Bus, so the result is lower-cased.

    Raises:
        ValueError: if the address is empty or has an unknown ``$`` segment.
    """
    path = _path(address.strip()).strip("/")
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise ValueError(f"empty address {address!r}")
    lowered = [part.lower() for part in parts]
    if lowered == [CBS_NODE]:
        return Address(Node.CBS, "", "", False)
    node = Node.ENTITY
    if lowered[-1] == MANAGEMENT_SUFFIX:
        node = Node.MANAGEMENT
        lowered = lowered[:-1]
    dead_letter = False
    if lowered and lowered[-1] == DEAD_LETTER_SUFFIX:
        dead_letter = True
        lowered = lowered[:-1]
    if any(part.startswith("$") for part in lowered):
        raise ValueError(f"unsupported address {address!r}")
    queue = "/".join(lowered)
    entity_path = queue + ("/" + DEAD_LETTER_SUFFIX if dead_letter else "")
    return Address(node, entity_path, queue, dead_letter)
