"""What each AMQP link and connection is for, kept on proton's objects.

Roles are named from the emulator's side of the link, in AMQP terms: a *receiver* link
takes transfers from a client's sender; a *sender* link transfers to a client's receiver.
proton keeps the attributes we set (``emulator_role``, ``emulator_state``) in its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator.auth import ConnectionGrants
from emulator.entity import Entity
from emulator.model import SessionInfo

__all__ = [
    "AttachPending",
    "ConnectionState",
    "EntityReceiverLink",
    "EntitySenderLink",
    "ReplySenderLink",
    "RequestReceiverLink",
    "SessionWaiter",
    "connection_state",
    "role_of",
]


@dataclass(eq=False)
class ConnectionState:
    """What the emulator knows about one client connection."""

    grants: ConnectionGrants = field(default_factory=ConnectionGrants)
    #: The client has ended a session or closed the connection: it is shutting down.
    peer_closing: bool = False
    #: Reply links by their address (a request's ``reply-to``).
    reply_links: dict[str, Any] = field(default_factory=dict)
    #: The connection's entity sender links (released when it goes).
    sender_links: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class EntityReceiverLink:
    """Our receiver link for a client's sender: it takes messages into ``entity``."""

    entity: Entity


@dataclass(eq=False)
class EntitySenderLink:
    """Our sender link for a client's receiver: it delivers messages from ``entity``;
    ``session`` is the locked session on session queues."""

    entity: Entity
    receive_and_delete: bool
    session: SessionInfo | None = None


@dataclass(eq=False)
class RequestReceiverLink:
    """Our receiver link for requests to ``$cbs`` (``entity`` None) or
    ``<entity>/$management``."""

    entity: Entity | None
    address: str


@dataclass(eq=False)
class ReplySenderLink:
    """Our sender link for a request/response node's replies; nothing to do but send."""


@dataclass(eq=False)
class SessionWaiter:
    """A "next available session" receiver whose attach is not answered yet."""

    link: Any
    entity: Entity
    task: Any = None


class AttachPending(Exception):
    """Raised by link binding when the attach answer must wait (next available session)."""


def connection_state(connection: Any) -> ConnectionState:
    """The :class:`ConnectionState` of a proton connection (created on first use)."""
    try:
        state: ConnectionState = connection.emulator_state
    except AttributeError:
        state = ConnectionState()
        connection.emulator_state = state
    return state


def role_of(link: Any) -> Any:
    """The role object of a proton link, or ``None`` before it is bound."""
    try:
        return link.emulator_role
    except AttributeError:
        return None
