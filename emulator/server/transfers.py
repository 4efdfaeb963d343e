"""Transfers from clients: messages into entities, requests to request/response nodes.

A message larger than the queue's ``MaxMessageSizeInKilobytes`` is refused (AMQP 1.0
section 2.7.3: exceeding ``max-message-size`` is a link error). Acceptance is echoed only
once the change is durable. A connection that does not read its replies gets no more
credit until it does.
"""

from __future__ import annotations

from typing import Any

from proton import Disposition, Endpoint

from emulator import codec
from emulator.codec import AmqpDecodeError
from emulator.entity import Entity
from emulator.errors import EmulatorError, MessageSizeExceededError
from emulator.server.amqp import TimerTask, condition
from emulator.server.limits import MAX_MESSAGE_SIZE, RECEIVER_LINK_CREDIT
from emulator.server.link_roles import EntityReceiverLink, RequestReceiverLink, role_of
from emulator.server.request_response import RequestResponse

__all__ = ["Transfers"]


class Transfers(RequestResponse):
    """Deliveries arriving on our receiver links."""

    def _replenish(self, link: Any) -> None:
        """Top up a receiving link's credit, unless its peer is not reading our replies."""
        if link.credit >= RECEIVER_LINK_CREDIT // 2 or not link.state & Endpoint.LOCAL_ACTIVE:
            return
        if self._backlog(link) > self.limits.max_outgoing_bytes:
            retry = TimerTask(lambda: self._guarded(None, lambda: self._replenish(link)))
            self._container.schedule(0.1, retry)
            return
        link.flow(RECEIVER_LINK_CREDIT - link.credit)

    def _on_transfer(self, link: Any, delivery: Any) -> None:
        if delivery.aborted:
            delivery.settle()
            return
        role = role_of(link)
        limit = (
            role.entity.settings.max_message_size
            if isinstance(role, EntityReceiverLink)
            else MAX_MESSAGE_SIZE
        )
        if delivery.partial:
            if delivery.pending > limit + 65536:
                # AMQP 1.0 section 2.7.3: exceeding max-message-size is a link error.
                link.condition = condition(
                    MessageSizeExceededError.condition,
                    f"The message exceeds the limit of {limit} bytes.",
                )
                link.close()
            return
        payload = bytes(link.recv(delivery.pending) or b"")
        link.advance()
        self._replenish(link)
        if isinstance(role, EntityReceiverLink):
            self._accept_messages(role.entity, delivery, payload)
        elif isinstance(role, RequestReceiverLink):
            self._answer_request(link, role, delivery, payload)
        else:
            delivery.update(Disposition.REJECTED)
            delivery.settle()

    def _accept_messages(self, entity: Entity, delivery: Any, payload: bytes) -> None:
        limit = entity.settings.max_message_size
        try:
            contents, size = codec.decode_transfer_sized(payload)
            if size > limit:
                raise MessageSizeExceededError(
                    f"The received message (size {size} bytes) exceeds the limit "
                    f"({limit} bytes) currently allowed on the link."
                )
            entity.enqueue_all(contents, self._clock())
        except AmqpDecodeError as exc:
            self._reject(delivery, "amqp:decode-error", str(exc))
            return
        except EmulatorError as exc:
            self._reject(delivery, exc.condition, exc.description)
            return

        def accept() -> None:
            delivery.update(Disposition.ACCEPTED)
            delivery.settle()

        self._after_commit(accept)

    @staticmethod
    def _reject(delivery: Any, name: str, description: str) -> None:
        delivery.local.condition = condition(name, description)
        delivery.update(Disposition.REJECTED)
        delivery.settle()
