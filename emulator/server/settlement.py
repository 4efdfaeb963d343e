"""Settlement on our sender links: apply the client's outcome and echo it settled.

The SDK waits for a *settled* disposition of the same outcome type; see
https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement
"""

from __future__ import annotations

import uuid
from typing import Any

from proton import Disposition

from emulator import codec
from emulator.errors import EmulatorError, MessageLockLostError, SessionLockLostError
from emulator.server.amqp import condition, text
from emulator.server.core import HandlerCore
from emulator.server.link_roles import EntitySenderLink, role_of

__all__ = ["DeliverySettlement"]

_DEAD_LETTER_CONDITION = "com.microsoft:dead-letter"


class DeliverySettlement(HandlerCore):
    """Dispositions from client receivers: complete, abandon, defer, dead-letter, release."""

    def _on_disposition(self, link: Any, delivery: Any) -> None:
        role = role_of(link)
        if not isinstance(role, EntitySenderLink):
            if delivery.settled:
                delivery.settle()
            return
        outcome = delivery.remote_state
        if outcome not in (
            Disposition.ACCEPTED,
            Disposition.REJECTED,
            Disposition.RELEASED,
            Disposition.MODIFIED,
        ):
            if delivery.settled:  # settled without an outcome: nothing to apply
                delivery.settle()
            return
        try:
            token: uuid.UUID = delivery.lock_token
        except AttributeError:
            delivery.settle()
            return
        self._settle(role, delivery, token, outcome)

    def _settle(
        self, role: EntitySenderLink, delivery: Any, token: uuid.UUID, outcome: Any
    ) -> None:
        """Apply a receiver's outcome and echo it settled (the SDK waits for the echo)."""
        entity = role.entity
        now = self._clock()
        remote = delivery.remote
        error: EmulatorError | None = None
        try:
            if outcome == Disposition.ACCEPTED:
                entity.complete(token, now)
            elif outcome == Disposition.RELEASED:
                entity.release(token, now)
            elif outcome == Disposition.MODIFIED:
                modify = remote.annotations
                props = {str(k): codec.owned(v) for k, v in modify.items()} if modify else None
                # undeliverable-here means "not for this receiver again": Service Bus defers;
                # otherwise it abandons (delivery count +1). @azure/service-bus sends both
                # without delivery-failed, the Python SDK with it.
                if remote.undeliverable:
                    entity.defer(token, now, props)
                else:
                    entity.abandon(token, now, props)
            else:
                reason, description = self._dead_letter_details(remote.condition)
                entity.dead_letter(token, now, reason, description)
        except MessageLockLostError as exc:
            # On a session receiver, a lost message lock means the session lock was lost.
            error = SessionLockLostError(exc.description) if role.session is not None else exc
        except EmulatorError as exc:  # e.g. dead-lettering inside a DLQ
            error = exc
        if delivery.settled:
            delivery.settle()
            return

        def echo() -> None:
            if error is not None:
                # A rejected echo carrying an error is how the service reports a settlement
                # it could not apply; the SDK raises e.g. MessageLockLostError from it.
                delivery.local.condition = condition(error.condition, error.description)
                delivery.update(Disposition.REJECTED)
            elif outcome == Disposition.MODIFIED:
                delivery.local.failed = remote.failed
                delivery.local.undeliverable = remote.undeliverable
                delivery.update(Disposition.MODIFIED)
            else:
                # Same outcome type; a dead-letter echo must carry no error.
                delivery.update(outcome)
            delivery.settle()

        self._after_commit(echo)

    @staticmethod
    def _dead_letter_details(condition: Any) -> tuple[str | None, str | None]:
        if condition is None:
            return None, None
        info = condition.info if isinstance(condition.info, dict) else {}
        info = {str(k): v for k, v in info.items()}
        reason = text(info.get("DeadLetterReason"))
        description = text(info.get("DeadLetterErrorDescription"))
        if condition.name != _DEAD_LETTER_CONDITION:
            reason = reason or text(condition.name)
            description = description or text(condition.description)
        return reason, description
