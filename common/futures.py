"""Completing asyncio futures whose waiter may have given up."""

import asyncio
from typing import Any, TypeVar

_T = TypeVar("_T")


def resolve(future: "asyncio.Future[_T]", value: _T) -> None:
    """Set ``value`` unless the future is done already (a cancelled await cancels it)."""
    if not future.done():
        future.set_result(value)


def fail(future: "asyncio.Future[Any]", exc: BaseException) -> None:
    """Set ``exc`` unless the future is done already."""
    if not future.done():
        future.set_exception(exc)
