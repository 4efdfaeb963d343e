"""Small AMQP and proton helpers shared by the wire layer."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from proton import Condition, Endpoint, Handler, symbol

__all__ = ["ACTIVE", "TimerTask", "condition", "log", "text"]

#: One logger for the whole wire layer: ``emulator.server``, the name operators configure.
log = logging.getLogger("emulator.server")

#: Both ends of a link (or connection) are open.
ACTIVE = Endpoint.LOCAL_ACTIVE | Endpoint.REMOTE_ACTIVE


class TimerTask(Handler):
    """A reactor timer handler that calls ``callback`` (``Container.schedule``)."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self._callback = callback

    def on_timer_task(self, event: Any) -> None:
        self._callback()


def condition(name: str, description: str) -> Any:
    """An AMQP error with an ``info`` map, as Azure sends (a tracking id).

    Some clients index the error's fields by position (the SDK's connection close handler
    reads ``info`` unconditionally), and proton leaves an empty ``info`` out entirely.
    """
    return Condition(name, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def text(value: Any) -> str | None:
    """A decoded AMQP string, symbol or binary as ``str`` (``None`` stays ``None``)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
