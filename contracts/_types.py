"""Constrained scalar types reused across event models.

Every constraint here is expressed so that it also appears in the generated JSON Schema
(length, pattern, format), except where a comment says otherwise, and means the same
there: JSON input is taken as it is, never coerced from another JSON type (a boolean is
not an IP address, a number is not a timestamp), and patterns use explicit character
classes, because ``\\s`` and ``\\S`` differ between pydantic's regex engine (Rust,
Unicode ``White_Space``) and the ECMA-262 dialect JSON Schema validators use.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    GetJsonSchemaHandler,
    IPvAnyAddress,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters every field treats as whitespace: those that both ECMA-262 ``\\s`` and
Unicode ``White_Space`` (``\\s`` in pydantic's Rust regex) count. ``U+0085`` and ``U+FEFF``,
where the two disagree, are not whitespace here, so each pattern below accepts everything
that the ``\\S`` it replaces accepted in either dialect."""

# WHITESPACE as a character class; \uXXXX reads the same in ECMA-262, Rust and Python.
_WHITESPACE_CLASS: Final = (
    r"\u0009-\u000d\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
NON_WHITESPACE_CLASS: Final = f"[^{_WHITESPACE_CLASS}]"
"""Pattern: one character that is not :data:`WHITESPACE` (use instead of ``\\S``)."""
NO_WHITESPACE: Final = f"^{NON_WHITESPACE_CLASS}+$"
"""Pattern: one or more characters, none of them :data:`WHITESPACE`."""
NOT_BLANK: Final = NON_WHITESPACE_CLASS
"""Pattern (unanchored): at least one character that is not :data:`WHITESPACE`."""

# RFC 3339, section 5.6 (``date-time``), which JSON Schema's ``date-time`` format names;
# pydantic alone also takes Unix times ("1700000000"), a space for "T" and no seconds.
_RFC3339_LOCAL: Final = r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?"
_RFC3339: Final = re.compile(rf"{_RFC3339_LOCAL}(?:[Zz]|[+-]\d{{2}}:\d{{2}})", re.ASCII)
_RFC3339_NAIVE: Final = re.compile(_RFC3339_LOCAL, re.ASCII)


def _rfc3339_text(value: Any) -> Any:
    # Python callers may pass a datetime; JSON gives a string, and nothing else is a time.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-11-21T09:30:00Z")
    if _RFC3339_NAIVE.fullmatch(value):
        raise ValueError("has no timezone offset: add Z or +hh:mm, e.g. 2026-11-21T09:30:00Z")
    if not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with seconds and a timezone offset, "
            "e.g. 2026-11-21T09:30:00Z"
        )
    return value


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise ValueError("is outside the years 0001-9999 once converted to UTC") from None


def _to_milliseconds(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_to_utc)]
"""A timezone-aware timestamp, normalised to UTC: in JSON an RFC 3339 ``date-time`` string
(seconds and an offset required, ``T``/``Z`` in either case). Naive datetimes are rejected,
because a timestamp without an offset cannot be placed on the time line. Not expressible
in JSON Schema, so stated in the field descriptions: the time must fall within years
0001-9999 once converted to UTC, and a leap second (``:60``) is refused (Python's
``datetime`` has none)."""

UtcMillisecondDatetime = Annotated[UtcDatetime, AfterValidator(_to_milliseconds)]
"""A :data:`UtcDatetime` truncated to whole milliseconds: the precision of an AMQP
``timestamp`` (AMQP 1.0 types, section 1.6.23), so it survives CloudEvents binary mode."""


@dataclass(frozen=True)
class JsonSchemaPattern:
    """Annotation that publishes ``pattern`` in the JSON Schema of a string whose validator
    checks the same rule in Python, so that a refusal reads "must not contain whitespace"
    rather than quoting a character class of ``\\u`` escapes."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The string's schema with ``pattern`` added."""
        json_schema = handler(core_schema)
        json_schema["pattern"] = self.pattern
        return json_schema


def _without_whitespace(value: str) -> str:
    if any(char in WHITESPACE for char in value):
        raise ValueError("must not contain whitespace")
    return value


def strip_whitespace(value: str) -> str:
    """``value`` without surrounding :data:`WHITESPACE`.

    Raises:
        ValueError: nothing is left (the value was empty or only whitespace).
    """
    stripped = value.strip(WHITESPACE)
    if not stripped:
        raise ValueError("must not be empty or only whitespace")
    return stripped


def free_text(max_length: int) -> tuple[StringConstraints, AfterValidator, JsonSchemaPattern]:
    """Metadata for free text (``Annotated[str, *free_text(200)]``): 1 to ``max_length``
    characters as sent, not all :data:`WHITESPACE`, stored without surrounding whitespace.

    The length is checked before stripping, so the JSON Schema's ``maxLength`` and the
    model agree on every input.
    """
    return (
        StringConstraints(min_length=1, max_length=max_length),
        AfterValidator(strip_whitespace),
        JsonSchemaPattern(NOT_BLANK),
    )


ShortText = Annotated[str, *free_text(200)]
"""1-200 characters, not all whitespace; stored without surrounding whitespace."""

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128),
    AfterValidator(_without_whitespace),
    JsonSchemaPattern(NO_WHITESPACE),
]
"""1-128 characters, no :data:`WHITESPACE` (ids, type names, template ids)."""

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


def _ip_address_text(value: Any) -> Any:
    # IPvAnyAddress also takes integers, so a JSON false or 0 would become 0.0.0.0.
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an IPv4 or IPv6 address string, e.g. 192.0.2.10")
    if "%" in value:  # JSON Schema's ipv6 format (RFC 4291) has no zone index
        raise ValueError("must be an IPv4 or IPv6 address without a zone index (%...)")
    return value


IpAddress = Annotated[
    IPvAnyAddress,
    BeforeValidator(_ip_address_text),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
    ),
]
"""An IPv4 or IPv6 address: in JSON its text form (no zone index); never a number."""

JsonObject = Annotated[dict[str, Any], Field(max_length=100)]
"""A JSON object with at most 100 top-level keys."""


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)
