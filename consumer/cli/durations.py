"""Option values that are times: ``30m``, ``2h``, ``7d`` or ISO-8601.

Not :data:`common.durations.Duration`: options take the human forms (``2h``), which
settings do not, and a bare number is refused here (``--older-than 30``: 30 what?) where a
setting reads it as seconds. ISO 8601 is shared: both read it with pydantic's
``timedelta``.
"""

import re
from datetime import UTC, datetime, timedelta

import typer
from pydantic import TypeAdapter, ValidationError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ISO8601 = TypeAdapter(timedelta)


def parse_duration(text: str, option: str) -> timedelta:
    """``30m``, ``2h``, ``7d``, ``1w``, or a ``timedelta`` string as pydantic reads one
    (ISO 8601 ``PT30M``, ``01:30:00``).

    Raises:
        typer.BadParameter: neither; names ``option``.
    """
    match = _DURATION.match(text.strip().lower())
    if match:
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        return _ISO8601.validate_python(text)
    except ValidationError:
        raise typer.BadParameter(f"{option}: {text!r} is not a duration like 30m, 2h, 7d") from None


def parse_time(text: str, option: str) -> datetime:
    """An aware UTC time: ``2h`` / ``7d`` ago, or ISO-8601 (UTC if it has no offset).

    Raises:
        typer.BadParameter: neither; names ``option``.
    """
    if _DURATION.match(text.strip().lower()):
        return datetime.now(UTC) - parse_duration(text, option)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{option}: {text!r} is not an ISO-8601 time or 2h/7d") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
