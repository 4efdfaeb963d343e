"""SDK errors turned into one-line :class:`~consumer.dlq.model.DlqError` messages."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from common.error_text import first_line
from consumer.dlq.model import DlqError, Outcome
from consumer.runtime.entities import EntityPath


@asynccontextmanager
async def guard(queue: str, outcome: Outcome | None = None) -> AsyncIterator[None]:
    """Turns errors into a one-line :class:`DlqError` carrying ``outcome`` (work done).

    A :class:`DlqError` raised inside keeps its message and gets ``outcome`` if it has none.
    """
    try:
        yield
    except DlqError as error:
        if error.outcome is None:
            error.outcome = outcome
        raise
    except Exception as error:
        raise DlqError(_describe(queue, error), outcome=outcome) from error


def _describe(queue: str, error: Exception) -> str:
    what = f"{_kind(queue)} {queue!r}"
    if isinstance(error, MessagingEntityNotFoundError):
        return f"{what} does not exist"
    if isinstance(error, ServiceBusAuthorizationError | ServiceBusAuthenticationError):
        return f"not allowed to use {what}: {first_line(error)}"
    if isinstance(error, ServiceBusConnectionError):
        return f"cannot reach Service Bus: {first_line(error)}"
    if isinstance(error, ServiceBusError):
        return f"{what}: {first_line(error)}"
    return f"{what}: {type(error).__name__}: {first_line(error)}"


def _kind(queue: str) -> str:
    """``queue`` or ``subscription`` (``entity`` for a path that is neither)."""
    try:
        return EntityPath.parse(queue).kind
    except ValueError:
        return "entity"
