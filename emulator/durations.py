"""ISO-8601 durations as used by Service Bus entity properties.

Azure (and the official emulator's ``Config.json``) writes entity durations such as
``LockDuration`` or ``DefaultMessageTimeToLive`` as XML-schema / ISO-8601 durations:
``PT1M``, ``P14D``, ``PT0.5S``, ``P1DT2H30M``. .NET's ``XmlConvert.ToTimeSpan`` reads them, so
we accept the same forms, including ``Y`` (365 days) and month ``M`` (30 days) the way .NET
approximates them, and ``W`` (7 days).

See https://learn.microsoft.com/azure/service-bus-messaging/service-bus-emulator-overview
for the configuration file this mirrors.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

__all__ = ["INFINITE", "format_duration", "parse_duration"]

#: Azure's "never expires" value, ``TimeSpan.MaxValue`` (``P10675199DT2H48M5.4775807S``).
#: ``timedelta`` can hold it; treat anything at least this long as infinite.
INFINITE = timedelta(days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580)

_PATTERN = re.compile(
    r"^P"
    r"(?:(?P<years>\d+)Y)?"
    r"(?:(?P<months>\d+)M)?"
    r"(?:(?P<weeks>\d+)W)?"
    r"(?:(?P<days>\d+)D)?"
    r"(?:T"
    r"(?:(?P<hours>\d+)H)?"
    r"(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?"
    r")?$"
)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration such as ``"PT1M"``, ``"P14D"`` or ``"PT0.5S"``.

    Args:
        text: The duration text. Case-sensitive designators, as in the standard.

    Returns:
        The duration. Fractional seconds keep microsecond precision.

    Raises:
        ValueError: if ``text`` is not an ISO-8601 duration, has no component at all
            (``"P"``, ``"PT"``), or is too large for ``timedelta``.
    """
    match = _PATTERN.match(text.strip())
    if match is None or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"invalid ISO-8601 duration {text!r} (expected e.g. 'PT1M', 'P14D')")
    parts = {name: value for name, value in match.groupdict().items() if value is not None}
    if not parts:
        raise ValueError(f"invalid ISO-8601 duration {text!r} (no components)")
    try:
        seconds = Decimal(parts.get("seconds", "0"))
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees digits
        raise ValueError(f"invalid seconds in duration {text!r}") from exc
    days = (
        int(parts.get("years", 0)) * 365
        + int(parts.get("months", 0)) * 30
        + int(parts.get("weeks", 0)) * 7
        + int(parts.get("days", 0))
    )
    try:
        return timedelta(
            days=days,
            hours=int(parts.get("hours", 0)),
            minutes=int(parts.get("minutes", 0)),
            microseconds=int(seconds * 1_000_000),
        )
    except OverflowError as exc:
        raise ValueError(f"duration {text!r} is too large") from exc


def format_duration(value: timedelta) -> str:
    """Render a duration as ISO-8601 (``PT1M``, ``P14D``, ``PT0.5S``), for messages and logs."""
    total_us = value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds
    days, rest_us = divmod(total_us, 86_400_000_000)
    hours, rest_us = divmod(rest_us, 3_600_000_000)
    minutes, rest_us = divmod(rest_us, 60_000_000)
    seconds = Decimal(rest_us) / Decimal(1_000_000)
    out = "P"
    if days:
        out += f"{days}D"
    if hours or minutes or seconds or not days:
        out += "T"
        if hours:
            out += f"{hours}H"
        if minutes:
            out += f"{minutes}M"
        if seconds or not (hours or minutes):
            out += f"{seconds.normalize():f}S"
    return out
