"""Audit events go to the append-only, hash-chained audit store."""

import logging

from consumer.stores.audit import AuditStore
from contracts import AuditEnvelope, EventEnvelope

logger = logging.getLogger(__name__)


class AuditHandler:
    """Appends each audit event to the store; a redelivered event is recorded once."""

    name = "audit"

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def __call__(self, envelope: EventEnvelope) -> bool:
        """Returns ``False`` when the event was already recorded."""
        assert isinstance(envelope, AuditEnvelope)
        if await self._store.append(envelope):
            return True
        logger.info("audit event %s already recorded; skipped", envelope.id)
        return False
