"""Constrained scalar types reused across event models.

Every constraint here is expressed so that it also appears in the generated JSON Schema
(length, pattern, format), except where a comment says otherwise.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    IPvAnyAddress,
    StringConstraints,
    WithJsonSchema,
)


def _not_a_number(value: Any) -> Any:
    # pydantic reads numbers as Unix time in lax mode; CloudEvents and our schemas say an
    # RFC 3339 string, so 0 must be an error, not 1970-01-01.
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 date-time string, not a number")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _to_milliseconds(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_to_utc)]
"""A timezone-aware timestamp (RFC 3339 in JSON), normalised to UTC. Naive datetimes are
rejected, because a timestamp without an offset cannot be placed on the time line."""

UtcMillisecondDatetime = Annotated[UtcDatetime, AfterValidator(_to_milliseconds)]
"""A :data:`UtcDatetime` truncated to whole milliseconds: the precision of an AMQP
``timestamp`` (AMQP 1.0 types, section 1.6.23), so it survives CloudEvents binary mode."""

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
"""1-200 characters after stripping surrounding whitespace."""

Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^\S+$"),
]
"""1-128 characters, no whitespace (ids, type names, template ids)."""

IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7E]+$")
]
"""1-128 visible ASCII characters (``!`` to ``~``), e.g. a UUID or ``order-42/receipt``."""

Locale = Annotated[
    str,
    StringConstraints(
        max_length=35,
        pattern=(
            r"^[A-Za-z]{2,3}(-[A-Za-z]{3}){0,3}"  # language, extlang
            r"(-[A-Za-z]{4})?"  # script
            r"(-(?:[A-Za-z]{2}|[0-9]{3}))?"  # region
            r"(-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"  # variants
            r"(-[0-9A-WY-Za-wy-z](-[A-Za-z0-9]{2,8})+)*"  # extensions
            r"(-[Xx](-[A-Za-z0-9]{1,8})+)?$"  # private use
        ),
    ),
]
"""A well-formed BCP 47 language tag (RFC 5646, section 2.1), e.g. ``en``, ``pt-BR``,
``zh-Hant-TW``; at most 35 characters (the buffer size RFC 5646 section 4.4.1 suggests).
Tags are checked for form, not looked up in the IANA registry; grandfathered tags and
private-use-only tags (``x-...``) are not accepted."""

IpAddress = Annotated[
    IPvAnyAddress,
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
    ),
]
"""An IPv4 or IPv6 address (JSON: its text form)."""

JsonObject = Annotated[dict[str, Any], Field(max_length=100)]
"""A JSON object with at most 100 top-level keys."""


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)
