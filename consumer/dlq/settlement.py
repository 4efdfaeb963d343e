"""The pass replay and purge share: snapshot the DLQ, then receive up to the last selected
dead letter, act on and complete each selected one, hold the others and release them.

Why the others are held and released rather than skipped: see :mod:`consumer.dlq`.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    MessageSizeExceededError,
)

from common.error_text import first_line
from consumer.dlq.model import DeadLetteredMessage, Outcome, Progress, Selected, describe_message
from consumer.dlq.release import release
from consumer.dlq.selection import Selection, dlq_receiver, peek_all

logger = logging.getLogger("consumer.dlq")

Act = Callable[[ServiceBusReceivedMessage, DeadLetteredMessage], Awaitable[None]]
"""Done to a selected dead letter before it is completed (replay: send its copy)."""
Removed = Callable[[DeadLetteredMessage], None]
"""Called once a selected dead letter is completed (purge: count it)."""

_BATCH = 100
_LOCK_RENEWAL_LIMIT = 3600.0
"""Seconds a held lock is renewed at most (a replay or purge pass longer than this lets
the locks of held, unselected dead letters expire, which counts a delivery)."""


async def each_selected(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    act: Act | None,
    removed: Removed | None,
    outcome: Outcome,
    progress: Progress | None,
    on_selected: Selected | None,
    max_wait_time: float,
) -> None:
    """Snapshot, then receive up to the last selected dead letter: ``act`` on and complete
    each selected one, hold the others and release them at the end.

    Fills ``outcome`` (``matched``, ``failed``, ``missing``) as it goes.
    """
    now = datetime.now(UTC)
    snapshot = await peek_all(client, queue, None)
    outcome.matched = [item for item in snapshot if selection.matches(item, now)]
    if on_selected is not None:
        on_selected(len(outcome.matched))
    pending = {item.sequence_number for item in outcome.matched}
    if not pending:
        return
    order = [item.sequence_number for item in snapshot]
    received: set[int] = set()
    held: list[ServiceBusReceivedMessage] = []
    renewer = AutoLockRenewer(max_lock_renewal_duration=_LOCK_RENEWAL_LIMIT)
    async with dlq_receiver(client, queue, renewer=renewer) as dlq:
        try:
            while pending:
                last_wanted = max(pending)
                # Ask for no more than the snapshot holds up to the last selected one, so
                # nothing after it (e.g. a replay dead-lettered again) is ever received.
                ahead = sum(
                    1 for number in order if number <= last_wanted and number not in received
                )
                batch = await dlq.receive_messages(
                    max_message_count=max(1, min(ahead, _BATCH)), max_wait_time=max_wait_time
                )
                if not batch:
                    break
                for message in batch:
                    number = int(message.sequence_number or 0)
                    received.add(number)
                    if number not in pending:
                        held.append(message)
                        continue
                    pending.discard(number)
                    if not await _settle_selected(dlq, queue, message, act, removed, outcome):
                        held.append(message)
                    if progress is not None:
                        progress(1)
                if any(int(m.sequence_number or 0) > last_wanted for m in batch):
                    break  # delivered in sequence order: what is still pending is not there
        finally:
            await renewer.close()
            for message in held:
                await release(dlq, message)
    outcome.missing = sorted(pending)


async def _settle_selected(
    dlq: ServiceBusReceiver,
    queue: str,
    message: ServiceBusReceivedMessage,
    act: Act | None,
    removed: Removed | None,
    outcome: Outcome,
) -> bool:
    """``act`` then complete; ``False`` when the message must be released (left as it was)."""
    item = describe_message(message)
    if act is not None:
        try:
            await act(message, item)
        except MessageSizeExceededError as exc:
            outcome.failed[item.sequence_number] = f"too large for {queue}: {first_line(exc)}"
            return False
        except (ValueError, TypeError) as exc:  # the SDK refused to build or send the copy
            logger.debug("dead letter %s not replayed", item.sequence_number, exc_info=True)
            outcome.failed[item.sequence_number] = f"{type(exc).__name__}: {first_line(exc)}"
            return False
    try:
        await dlq.complete_message(message)
    except (MessageLockLostError, MessageAlreadySettled) as exc:
        sent = "copy sent, but " if item.sequence_number in outcome.replayed else ""
        outcome.failed[item.sequence_number] = (
            f"{sent}still in the DLQ: its lock was lost ({first_line(exc)})"
        )
        return True
    if removed is not None:
        removed(item)
    return True
