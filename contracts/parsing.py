"""Reading envelopes from message bodies: JSON structured mode, or attributes plus data.

Every failure is a :class:`~contracts.errors.ContractViolation` whose reason says why the
message can never be processed, so the consumer dead-letters it instead of retrying.
Validation runs with :data:`~contracts._base.READ_CONTEXT`: unknown fields are ignored
(tolerant reader) and creation-time checks are skipped.
"""

from collections.abc import Mapping, Sequence
from typing import Final, cast

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from contracts._base import READ_CONTEXT
from contracts.envelope import REQUIRED_ATTRIBUTES, SCHEMA_VERSION, Envelope, EventEnvelope
from contracts.errors import ContractViolation, DeadLetterReason
from contracts.registry import lookup

_JSON_VALUE: TypeAdapter[object] = TypeAdapter(object)
_JSON_KINDS: Final = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
_MAX_PROBLEMS: Final = 5


def parse_envelope(body: bytes | str) -> EventEnvelope:
    """Parse and validate a CloudEvents JSON (structured mode) body.

    Args:
        body: UTF-8 JSON text of one event.

    Returns:
        The typed envelope of the event's type and schema version.

    Raises:
        ContractViolation: with reason ``InvalidJson`` (not UTF-8 JSON),
            ``UnknownEventType``, ``UnsupportedSchemaVersion`` or
            ``SchemaValidationFailed``: JSON that is not an object, or an object with
            missing or invalid attributes (the description names up to five, e.g.
            ``data.actor.id: Field required``).
    """
    try:
        raw = _JSON_VALUE.validate_json(body)
    except ValidationError as exc:
        raise ContractViolation(
            DeadLetterReason.INVALID_JSON, _describe(exc.errors(include_url=False), limit=1)
        ) from None
    if not isinstance(raw, dict):
        # Valid JSON, so not InvalidJson: the CloudEvents JSON format makes an event an
        # object (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md#3-envelope).
        raise ContractViolation(
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            f"body: a CloudEvents JSON event must be an object, not {_json_kind(raw)}",
        )
    return validate_envelope(raw)


def parse_binary(attributes: Mapping[str, object], data: bytes | str) -> EventEnvelope:
    """Validate an event delivered in binary mode: attributes apart, ``data`` as JSON.

    Args:
        attributes: CloudEvents attributes by name (``id``, ``type``, ...), already
            decoded from the transport (strings, or a datetime for ``time``).
        data: The JSON text of ``data``.

    Raises:
        ContractViolation: as :func:`parse_envelope`; ``InvalidJson`` if ``data`` is not
            UTF-8 JSON.
    """
    try:
        value = _JSON_VALUE.validate_json(data)
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"]
        raise ContractViolation(DeadLetterReason.INVALID_JSON, f"data: {message}") from None
    return validate_envelope({**attributes, "data": value})


def validate_envelope(raw: Mapping[str, object]) -> EventEnvelope:
    """Validate an envelope already decoded to a mapping (see :func:`parse_envelope`).

    The ``(type, schemaversion)`` pair picks the model from :mod:`contracts.registry`;
    an absent ``schemaversion`` means ``"1"``. The result is typed as the shipped
    envelopes; a type registered at run time comes back as its own envelope model.

    Raises:
        ContractViolation: ``UnknownEventType``, ``UnsupportedSchemaVersion`` or
            ``SchemaValidationFailed`` (also when ``type`` is missing or not a string:
            the description then names every missing or invalid attribute).
    """
    if not isinstance(raw.get("type"), str):
        raise ContractViolation(
            DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            _join(_untyped_problems(raw), _MAX_PROBLEMS),
        )
    spec = lookup(raw.get("type"), raw.get("schemaversion", SCHEMA_VERSION))
    problems = [f"{name}: Field required" for name in REQUIRED_ATTRIBUTES if name not in raw]
    try:
        envelope = spec.envelope.model_validate(raw, context=dict(READ_CONTEXT))
    except ValidationError as exc:
        problems.extend(_problems(exc.errors(include_url=False)))
        raise ContractViolation(
            DeadLetterReason.SCHEMA_VALIDATION_FAILED, _join(problems, _MAX_PROBLEMS)
        ) from None
    if problems:
        raise ContractViolation(
            DeadLetterReason.SCHEMA_VALIDATION_FAILED, _join(problems, _MAX_PROBLEMS)
        )
    # The registry holds Envelope subclasses; EventEnvelope names the shipped ones, which
    # is what the typed code reading them narrows on.
    return cast(EventEnvelope, envelope)


def _untyped_problems(raw: Mapping[str, object]) -> list[str]:
    """What is wrong with a message that has no string ``type``: no model can be chosen,
    so the attributes every event shares are checked, ``type`` first."""
    problems = [
        f"{name}: Field required" for name in (*REQUIRED_ATTRIBUTES, "data") if name not in raw
    ]
    try:
        Envelope.model_validate(raw, context=dict(READ_CONTEXT))
    except ValidationError as exc:
        problems.extend(p for p in _problems(exc.errors(include_url=False)) if p not in problems)
    return sorted(problems, key=lambda problem: not problem.startswith("type: "))


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    return _JSON_KINDS.get(type(value), "a number")


def _problems(errors: Sequence[ErrorDetails]) -> list[str]:
    problems = []
    for error in errors:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{location}: {error['msg']}")
    return problems


def _join(problems: Sequence[str], limit: int) -> str:
    shown = list(problems[:limit])
    if len(problems) > limit:
        shown.append(f"and {len(problems) - limit} more")
    return "; ".join(shown)


def _describe(errors: Sequence[ErrorDetails], limit: int) -> str:
    """One line naming the failing fields, e.g. ``data.actor.id: Field required``."""
    return _join(_problems(errors), limit)
