"""The proton reactor ``Handler`` that serves the namespace, assembled from its parts.

Each part is one job, in its own module: :mod:`~emulator.server.connections` (accepting
and dropping connections), :mod:`~emulator.server.link_attach` (link attach and detach,
session receivers), :mod:`~emulator.server.delivery_pump` (credit-driven transfer),
:mod:`~emulator.server.transfers` and :mod:`~emulator.server.request_response` (what
clients send), :mod:`~emulator.server.settlement` (outcomes on our deliveries), all over
:mod:`~emulator.server.core` (shared state, guard, durability, timers, stopping).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from emulator.auth import SasValidator
from emulator.entity import Entity
from emulator.model import SessionInfo
from emulator.namespace import Namespace
from emulator.server.connections import Connections
from emulator.server.limits import ServerLimits
from emulator.server.settlement import DeliverySettlement
from emulator.server.transfers import Transfers

__all__ = ["EmulatorHandler"]


class EmulatorHandler(Connections, Transfers, DeliverySettlement):
    """Serves a :class:`~emulator.namespace.Namespace` over AMQP.

    Args:
        namespace_factory: Builds the entities, given the callbacks to run when messages
            become available in one and when a session lock expires.
        validator: SAS validator for CBS ``put-token``.
        clock: Seconds since the epoch (UTC); ``time.time`` unless testing.
        limits: Protection against misbehaving clients.
    """

    def __init__(
        self,
        namespace_factory: Callable[
            [Callable[[Entity], None], Callable[[Entity, SessionInfo, object], None]], Namespace
        ],
        validator: SasValidator,
        clock: Callable[[], float] = time.time,
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__(validator, clock, limits)
        self.namespace = namespace_factory(self._on_available, self._on_session_lost)

    def on_delivery(self, event: Any) -> None:
        """A transfer on our receiver links, or a disposition on our sender links."""
        delivery = event.delivery
        link = delivery.link
        if link.is_receiver:
            self._guarded(link.connection, lambda: self._on_transfer(link, delivery))
        else:
            self._guarded(link.connection, lambda: self._on_disposition(link, delivery))
