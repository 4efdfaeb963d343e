"""The delivery pump: hand available messages to sender links with credit, round-robin.

Peek-lock deliveries go unsettled with the lock token as delivery tag; receive-and-delete
deliveries go pre-settled. A connection that does not read its socket gets no more
deliveries until it does (the entity is retried shortly).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from emulator.entity import Entity
from emulator.model import render_message
from emulator.server.amqp import ACTIVE, TimerTask
from emulator.server.core import HandlerCore
from emulator.server.link_roles import EntitySenderLink, role_of

__all__ = ["DeliveryPump"]


class DeliveryPump(HandlerCore):
    """Credit-driven transfer from entities to client receivers."""

    def on_link_flow(self, event: Any) -> None:
        link = event.link
        role = role_of(link)
        if isinstance(role, EntitySenderLink):
            self._guarded(link.connection, lambda: self._pump(role.entity))

    def _pump(self, entity: Entity) -> None:
        """Hand available messages to receivers with credit, round-robin."""
        if entity in self._pumping:
            self._repump.add(entity)
            return
        self._pumping.add(entity)
        try:
            while True:
                self._repump.discard(entity)
                self._pump_once(entity)
                if entity not in self._repump:
                    break
        finally:
            self._pumping.discard(entity)

    def _pump_once(self, entity: Entity) -> None:
        links = self._sender_links.get(entity)
        if not links:
            return
        limit = self.limits.max_outgoing_bytes
        ready = []
        for link in links:
            if link.credit <= 0 or link.state & ACTIVE != ACTIVE:
                continue
            if self._backlog(link) > limit:
                self._throttle(entity)
                continue
            ready.append(link)
        if ready:
            links.append(links.pop(0))  # rotate the starting point between pumps
        now = self._clock()
        while ready:
            for link in list(ready):
                if not self._deliver(link, entity, now) or link.credit <= 0:
                    ready.remove(link)
                elif self._backlog(link) > limit:
                    ready.remove(link)
                    self._throttle(entity)
        for link in list(links):
            if link.drain_mode and link.credit > 0:
                role: EntitySenderLink = link.emulator_role
                if not entity.has_available(now, role.session):
                    link.drained()

    def _throttle(self, entity: Entity) -> None:
        """Retry delivering to ``entity`` shortly (a receiver's connection is backed up)."""
        self._throttled.add(entity)
        if self._throttle_task is None and self._container is not None:
            self._throttle_task = self._container.schedule(0.05, TimerTask(self._unthrottle))

    def _unthrottle(self) -> None:
        self._throttle_task = None
        entities, self._throttled = self._throttled, set()
        for entity in entities:
            self._guarded(None, functools.partial(self._pump, entity))

    def _deliver(self, link: Any, entity: Entity, now: float) -> bool:
        role: EntitySenderLink = link.emulator_role
        if role.receive_and_delete:
            message = entity.receive_and_delete(now, role.session)
            if message is None:
                return False
            delivery = link.delivery(uuid.uuid4().bytes_le)
            link.stream(render_message(message))
            link.advance()
            delivery.settle()
            return True
        message = entity.lock_next(now, role.session)
        if message is None or message.lock_token is None:
            return False
        token = message.lock_token
        # The lock token is the delivery tag (.NET GUID byte order). proton decodes tags
        # as UTF-8 text, so keep the token on the delivery instead of reading the tag back.
        delivery = link.delivery(token.bytes_le)
        delivery.lock_token = token
        link.stream(render_message(message))
        link.advance()
        return True
