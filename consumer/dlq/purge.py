"""Purge: delete selected dead letters for good."""

from azure.servicebus.aio import ServiceBusClient

from consumer.dlq.errors import guard
from consumer.dlq.model import DeadLetteredMessage, Outcome, Progress, Selected
from consumer.dlq.selection import Selection
from consumer.dlq.settlement import each_selected


async def purge(
    client: ServiceBusClient,
    queue: str,
    selection: Selection,
    *,
    progress: Progress | None = None,
    on_selected: Selected | None = None,
    max_wait_time: float = 5.0,
) -> Outcome:
    """Delete the selected dead letters of ``queue``.

    Works on a snapshot taken before anything is deleted, like
    :func:`~consumer.dlq.replay.replay`: dead letters that arrive during the call are kept,
    even with ``Selection(everything=True)``.

    Args:
        client: The client.
        queue: Main queue name.
        selection: What to delete.
        progress: Called after each selected dead letter is handled.
        on_selected: Called once with the number selected, before any is deleted.
        max_wait_time: Seconds to wait for a selected dead letter to be delivered before
            reporting the rest as ``missing``.

    Raises:
        DlqError: the queue does not exist or cannot be used; its ``outcome`` says how many
            were deleted before that.
    """
    outcome = Outcome()

    def deleted(_item: DeadLetteredMessage) -> None:
        outcome.purged += 1

    async with guard(queue, outcome):
        await each_selected(
            client, queue, selection, None, deleted, outcome, progress, on_selected, max_wait_time
        )
    return outcome
