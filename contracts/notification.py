"""Notification events: a message to deliver to one recipient over one channel (version 1)."""

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts._base import ContractModel, is_reading
from contracts._types import (
    IdempotencyKey,
    Identifier,
    JsonObject,
    Locale,
    ShortText,
    UtcDatetime,
    utc_now,
)

_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)
_NOT_IN_AN_IRI: Final = re.compile(r'[\x00-\x20<>"{}|\\^`\x7f]')
"""Characters an IRI (RFC 3987, JSON Schema's ``iri`` format) never contains, which URL
parsing would silently percent-encode or drop instead of refusing."""

DELIVER_AT_PAST_TOLERANCE: Final = timedelta(minutes=5)
"""How far in the past ``deliver_at`` may be when an event is created (clock skew between
the caller and the producer); an earlier time is rejected."""
DELIVER_AT_MAX_AHEAD: Final = timedelta(days=365)
"""How far in the future ``deliver_at`` may be when an event is created."""


class NotificationChannel(StrEnum):
    """How the notification is delivered."""

    EMAIL = "email"
    WEBHOOK = "webhook"


class NotificationPriority(StrEnum):
    """Delivery priority; handlers may use it to order work, it is not a guarantee."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


_SPECIAL_USE_DOMAINS: Final = ("arpa", "invalid", "local", "localhost", "onion", "test")
"""Names under which ``email_validator`` refuses an address (special-use and reserved
domains, RFC 6761 and RFC 6762), though JSON Schema's ``email`` format allows them."""


def _any_case(word: str) -> str:
    # ECMA-262 patterns in JSON Schema have no case-insensitive flag.
    return "".join(f"[{char.upper()}{char.lower()}]" for char in word)


_SPECIAL_USE_SUFFIX: Final = (
    rf"(^|[.@])({'|'.join(_any_case(name) for name in _SPECIAL_USE_DOMAINS)})$"
)


def _state_cross_field_rules(schema: dict[str, Any]) -> None:
    """Put the rules between fields into the JSON Schema, so that documents valid under it
    are the ones the model accepts (JSON Schema 2020-12, ``allOf``/``oneOf``)."""
    with_body = {"required": ["body"], "properties": {"body": {"type": "string"}}}
    with_template = {"required": ["template"], "properties": {"template": {"type": "string"}}}
    without_parameters = {"properties": {"parameters": {"maxProperties": 0}}}
    schema["allOf"] = [
        {"oneOf": [with_body, with_template]},
        {"anyOf": [without_parameters, with_template]},
        {
            "oneOf": [
                {
                    "properties": {
                        "channel": {"const": NotificationChannel.EMAIL.value},
                        "recipient": {
                            "format": "idn-email",
                            # email_validator's rules beyond the format: an unquoted local
                            # part, a domain with a dot, no address literal.
                            "pattern": r'^[^"@\[\]]+@[^"@\[\]]+\.[^"@\[\]]+$',
                            "not": {"pattern": _SPECIAL_USE_SUFFIX},
                        },
                    }
                },
                {
                    "properties": {
                        "channel": {"const": NotificationChannel.WEBHOOK.value},
                        "recipient": {
                            "format": "iri",
                            "pattern": rf"^{_any_case('http')}[Ss]?://[^/?#]+",
                        },
                    }
                },
            ]
        },
    ]


class NotificationEvent(ContractModel):
    """A notification to deliver (``io.servicebus-events.notification.requested``, version 1).

    Exactly one of ``body`` or ``template`` is set; ``parameters`` only with ``template``.
    ``recipient`` is an e-mail address for the ``email`` channel (normalised: domain
    lower-cased; special-use domains such as ``.test`` are refused) and an ``http(s)`` URL
    for ``webhook`` (normalised by URL parsing). The JSON Schema states these rules too.
    ``deliver_at``, when set, must lie between 5 minutes in the past and 365 days in the
    future at the moment the event is created; that check is skipped when a message is read
    back from a queue, where the time has legitimately passed. JSON Schema cannot compare
    with the current time, so only the field's description states it.

    Raises:
        pydantic.ValidationError: on construction, naming the failing field or rule.
    """

    model_config = ConfigDict(json_schema_extra=_state_cross_field_rules)

    channel: NotificationChannel
    """``email`` or ``webhook``."""
    recipient: Annotated[str, StringConstraints(min_length=3, max_length=320)]
    """E-mail address (``email``) or http(s) URL (``webhook``); 3-320 characters."""
    subject: ShortText
    """Subject line (e-mail) or title (webhook); 1-200 characters, not all whitespace
    (surrounding whitespace is removed)."""
    body: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] | None = None
    """Plain-text body; 1-100,000 characters. Exclusive with ``template``."""
    template: Identifier | None = None
    """Id of the template to render instead of ``body``; 1-128 characters, no whitespace."""
    parameters: JsonObject = Field(default_factory=dict)
    """Template parameters (JSON object, at most 100 keys); only with ``template``."""
    locale: Locale | None = None
    """Language of the notification as a BCP 47 tag, e.g. ``en-GB``; picks the template
    translation. Absent: the recipient's or the system's default."""
    priority: NotificationPriority = NotificationPriority.NORMAL
    """``low``, ``normal`` (default) or ``high``."""
    deliver_at: UtcDatetime | None = None
    """Earliest delivery time (RFC 3339 with seconds and an offset, stored as UTC); becomes
    the message's scheduled enqueue time. Absent: deliver now. When the event is created it
    must lie between 5 minutes in the past and 365 days in the future (checked against the
    producer's clock, so not expressible in JSON Schema)."""
    idempotency_key: IdempotencyKey | None = None
    """Caller-chosen key: notifications with the same key are delivered at most once, even
    if the caller retried the request; 1-128 visible ASCII characters."""

    @field_validator("deliver_at")
    @classmethod
    def _check_deliver_at_window(
        cls, value: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        if value is None or is_reading(info):
            return value
        now = utc_now()
        if value < now - DELIVER_AT_PAST_TOLERANCE:
            raise ValueError(
                "deliver_at is in the past by more than "
                f"{int(DELIVER_AT_PAST_TOLERANCE.total_seconds() // 60)} minutes"
            )
        if value > now + DELIVER_AT_MAX_AHEAD:
            raise ValueError(
                f"deliver_at is more than {DELIVER_AT_MAX_AHEAD.days} days in the future"
            )
        return value

    @model_validator(mode="after")
    def _check_content_and_recipient(self, info: ValidationInfo) -> Self:
        if (self.body is None) == (self.template is None):
            raise ValueError("exactly one of 'body' or 'template' must be given")
        if self.parameters and self.template is None:
            raise ValueError("'parameters' requires 'template'")
        if self.channel is NotificationChannel.EMAIL:
            try:
                normalized = validate_email(self.recipient, check_deliverability=False).normalized
            except EmailNotValidError as exc:
                raise ValueError(f"recipient is not a valid e-mail address: {exc}") from exc
            object.__setattr__(self, "recipient", normalized)
        else:
            # Only when created: before this check, URL parsing let such characters through
            # and v1 messages carrying them may still be on a queue.
            if not is_reading(info) and _NOT_IN_AN_IRI.search(self.recipient):
                raise ValueError("recipient is not a valid http(s) URL (RFC 3987 IRI)")
            try:
                url = _HTTP_URL.validate_python(self.recipient)
            except ValidationError:
                raise ValueError("recipient is not a valid http(s) URL") from None
            object.__setattr__(self, "recipient", str(url))
        return self
