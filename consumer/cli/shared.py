"""What every ``consumer`` command group shares: the consoles, the one-line error, running
a coroutine, the settings read outside the worker."""

import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import typer
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console

from common.servicebus import ServiceBusConnection
from consumer import dlq as dlq_api

T = TypeVar("T")
out = Console()
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """Reported as one line; exit code 1."""


class BusSettings(BaseSettings, ServiceBusConnection):
    """``CONSUMER_SERVICEBUS_*``: how the ``dlq`` commands reach Service Bus."""

    model_config = SettingsConfigDict(env_prefix="CONSUMER_", extra="ignore")


class StoreSettings(BaseSettings):
    """``CONSUMER_AUDIT_STORE_URL``: the database of ``migrate`` and ``audit``."""

    model_config = SettingsConfigDict(env_prefix="CONSUMER_", extra="ignore")
    audit_store_url: str = "sqlite+aiosqlite:///audit.db"


def run(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` on a new event loop; a :class:`~consumer.dlq.DlqError` becomes a
    :class:`CliError` (its ``__context__`` keeps the original, with its outcome)."""

    async def main() -> T:
        return await awaitable

    try:
        return asyncio.run(main())
    except dlq_api.DlqError as exc:
        raise CliError(str(exc)) from None


def line(text: str) -> None:
    """One stdout line, cut to the terminal width."""
    out.print(text, overflow="ellipsis", no_wrap=True, crop=True, markup=False, highlight=False)
