"""AMQP message (de)composition on top of proton's type codec.

All AMQP type encoding and decoding goes through ``proton.Data``. What this module adds is
*section handling*: a message is a sequence of described sections (header, delivery
annotations, message annotations, properties, application properties, body, footer). We
split a payload into its sections with ``Data.decode`` and keep the sections we do not
change as the exact bytes the client sent.

Why not ``proton.Message``? It holds only one body section (an ``AmqpAnnotatedMessage``
may carry several ``data`` or ``amqp-sequence`` sections), it re-encodes the body, and its
encoder omits header fields that have their default value, which loses an explicit
``delivery-count`` of 0 (the SDK then reports ``delivery_count=None``). So outgoing messages
are built section by section here, still with ``proton.Data`` doing the encoding.

Batches: proton 0.40 does not expose a transfer's ``message-format``, so a batch
(format ``0x80013700``) is recognised from its payload: an envelope whose body consists only
of ``data`` sections, each of which is itself a complete encoded message.

Times are milliseconds since the epoch (AMQP ``timestamp``) where a name ends in ``_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from proton import Data, Described, Message, int32, symbol, timestamp, ubyte, uint, ulong

from emulator.amqp_values import (
    AmqpDecodeError,
    OwnedData,
    decode_value,
    long_array,
    owned,
    timestamp_array,
    timestamp_ms,
    uuid_array,
)

__all__ = [
    "AmqpDecodeError",
    "Header",
    "MessageContent",
    "decode_message",
    "decode_request",
    "decode_transfer",
    "decode_value",
    "encode_message",
    "encode_response",
    "long_array",
    "owned",
    "timestamp_array",
    "timestamp_ms",
    "uuid_array",
]

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_SEQUENCE = 0x76
AMQP_VALUE = 0x77
FOOTER = 0x78
_BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)

#: ``header.ttl`` is a uint (milliseconds); longer TTLs are left out of the header.
_MAX_HEADER_TTL_MS = 0xFFFFFFFF

# Message annotation keys (see the SDK's ``_common/constants.py``).
X_OPT_SEQUENCE_NUMBER = symbol("x-opt-sequence-number")
X_OPT_ENQUEUED_TIME = symbol("x-opt-enqueued-time")
X_OPT_LOCKED_UNTIL = symbol("x-opt-locked-until")
X_OPT_MESSAGE_STATE = symbol("x-opt-message-state")
X_OPT_SCHEDULED_ENQUEUE_TIME = symbol("x-opt-scheduled-enqueue-time")
X_OPT_PARTITION_KEY = symbol("x-opt-partition-key")
X_OPT_ENQUEUE_SEQUENCE_NUMBER = symbol("x-opt-enqueue-sequence-number")


@dataclass(frozen=True, slots=True)
class Header:
    """The AMQP ``header`` section. ``ttl_ms`` is the message's time to live in milliseconds."""

    durable: bool = False
    priority: int = 4
    ttl_ms: int | None = None
    first_acquirer: bool = False
    delivery_count: int = 0


@dataclass(frozen=True, slots=True)
class MessageContent:
    """A client message, kept close to the wire form.

    Attributes:
        header: The client's header (its ``delivery_count`` is ignored; the store tracks it).
        annotations: Message annotations (symbol keys), owned copies.
        properties: The 13 ``properties`` fields (``message-id`` ... ``reply-to-group-id``),
            or ``None`` if the message had no properties section.
        application_properties: The encoded application-properties section, passed through.
        body: The encoded body sections and footer, passed through byte for byte.
    """

    header: Header = field(default_factory=Header)
    annotations: dict[Any, Any] = field(default_factory=dict)
    properties: tuple[Any, ...] | None = None
    application_properties: bytes | None = None
    body: bytes = b""

    @property
    def message_id(self) -> Any:
        """``properties.message-id`` (str, UUID, ulong or bytes), or ``None``."""
        return self.properties[0] if self.properties else None

    @property
    def session_id(self) -> str | None:
        """``properties.group-id``, which Service Bus uses as the SessionId."""
        if not self.properties or len(self.properties) <= 10:
            return None
        value = self.properties[10]
        return str(value) if value is not None else None

    @property
    def scheduled_enqueue_time_ms(self) -> int | None:
        """Annotation ``x-opt-scheduled-enqueue-time`` (ms since the epoch), or ``None``."""
        value = self.annotations.get(X_OPT_SCHEDULED_ENQUEUE_TIME)
        return int(value) if value is not None else None

    @property
    def encoded_size(self) -> int:
        """Approximate size in bytes (body and application properties dominate)."""
        return len(self.body) + len(self.application_properties or b"") + 64

    def with_message_id(self, message_id: Any) -> MessageContent:
        """A copy whose ``properties.message-id`` is ``message_id``."""
        fields = list(self.properties or (None,) * 13)
        fields[0] = message_id
        return replace(self, properties=tuple(fields))

    def application_properties_dict(self) -> dict[Any, Any]:
        """The decoded application properties (an empty dict if there are none)."""
        if self.application_properties is None:
            return {}
        section = decode_value(self.application_properties)
        value = section.value if isinstance(section, Described) else None
        return dict(value) if isinstance(value, dict) else {}

    def with_application_properties(self, updates: Mapping[str, Any]) -> MessageContent:
        """A copy with ``updates`` merged into the application properties.

        Values must be simple AMQP values (``str``, ``int``, ``bool``, ``float``, ``bytes``,
        ``None``); ``None`` values are skipped.
        """
        merged = self.application_properties_dict()
        merged.update({k: v for k, v in updates.items() if v is not None})
        return replace(self, application_properties=_encode_section(APPLICATION_PROPERTIES, merged))


def _encode_value(value: Any) -> bytes:
    data = Data()
    data.put_object(value)
    return bytes(data.encode())


def _encode_section(code: int, value: Any) -> bytes:
    return _encode_value(Described(ulong(code), value))


def _sections(
    payload: bytes | memoryview, *, body_values: bool = False
) -> list[tuple[int, memoryview, Any]]:
    """Split ``payload`` into ``(section code, raw bytes, decoded value)`` triples.

    ``amqp-value`` and ``amqp-sequence`` bodies are passed through as bytes, so their values
    are only decoded (``None`` otherwise) when ``body_values`` is true: Service Bus takes any
    AMQP value as a body, including maps keyed by lists or maps, which Python cannot hold.
    proton's ``decode`` still checks that the body is well-formed.
    """
    view = memoryview(payload)
    data = OwnedData()
    out: list[tuple[int, memoryview, Any]] = []
    position = 0
    while position < len(view):
        data.clear()
        try:
            # proton's stub says bytes; any buffer works (cffi from_buffer), and slicing a
            # memoryview avoids copying the rest of the payload for every section.
            consumed = data.decode(cast(bytes, view[position:]))
        except Exception as exc:
            raise AmqpDecodeError(f"undecodable AMQP data at byte {position}: {exc}") from None
        if consumed <= 0:
            raise AmqpDecodeError(f"undecodable AMQP data at byte {position}")
        data.rewind()
        data.next()
        if data.type() != Data.DESCRIBED:
            raise AmqpDecodeError(f"byte {position}: expected a described message section")
        data.enter()
        data.next()
        descriptor = data.get_object()
        if not isinstance(descriptor, int):
            raise AmqpDecodeError(f"byte {position}: expected a described message section")
        code = int(descriptor)
        if not HEADER <= code <= FOOTER:
            raise AmqpDecodeError(f"byte {position}: unknown message section 0x{code:x}")
        value: Any = None
        if data.next() is not None and (body_values or code not in (AMQP_VALUE, AMQP_SEQUENCE)):
            try:
                value = data.get_object()
            except Exception as exc:
                raise AmqpDecodeError(f"undecodable AMQP value at byte {position}: {exc}") from None
        out.append((code, view[position : position + consumed], value))
        position += consumed
    if not out:
        raise AmqpDecodeError("empty message")
    return out


def _content(sections: list[tuple[int, memoryview, Any]]) -> MessageContent:
    header = Header()
    annotations: dict[Any, Any] = {}
    properties: tuple[Any, ...] | None = None
    application_properties: bytes | None = None
    body = bytearray()
    for code, raw, value in sections:
        if code == HEADER:
            fields = list(value or []) + [None] * 5
            header = Header(
                durable=bool(fields[0]),
                priority=int(fields[1]) if fields[1] is not None else 4,
                ttl_ms=int(fields[2]) if fields[2] is not None else None,
                first_acquirer=bool(fields[3]),
            )
        elif code == MESSAGE_ANNOTATIONS:
            annotations = dict(value or {})
        elif code == PROPERTIES:
            props = list(value or [])
            properties = tuple(props + [None] * (13 - len(props)))
        elif code == APPLICATION_PROPERTIES:
            application_properties = raw.tobytes()
        elif code in _BODY or code == FOOTER:
            body += raw
        # Delivery annotations are per-hop and are not stored.
    return MessageContent(
        header=header,
        annotations=annotations,
        properties=properties,
        application_properties=application_properties,
        body=bytes(body),
    )


def decode_message(payload: bytes | memoryview) -> MessageContent:
    """Decode one encoded AMQP message.

    Raises:
        AmqpDecodeError: if ``payload`` is not a sequence of AMQP message sections.
    """
    return _content(_sections(payload))


def _batch_parts(sections: list[tuple[int, memoryview, Any]]) -> list[bytes] | None:
    bodies = [(code, value) for code, _, value in sections if code in _BODY]
    if not bodies or any(code != DATA for code, _ in bodies):
        return None
    parts: list[bytes] = []
    for _, value in bodies:
        if not isinstance(value, (bytes, memoryview)):
            return None
        part = bytes(value)
        # A section starts with the described-type constructor 0x00 and a ulong descriptor
        # (0x53 smallulong or 0x80 ulong); most plain data bodies fail this cheap check.
        if part[:1] != b"\x00" or part[1:2] not in (b"\x53", b"\x80"):
            return None
        try:
            inner = _sections(part)
        except AmqpDecodeError:
            return None
        if not any(code in _BODY for code, _, _ in inner):
            return None
        parts.append(part)
    return parts


def decode_transfer(payload: bytes | memoryview) -> list[MessageContent]:
    """Decode what a client sent in one transfer: one message, or each message of a batch.

    A batch (``message-format`` 0x80013700, which proton does not expose) is recognised by
    its shape: only ``data`` body sections, each holding a complete encoded message. A
    single message whose ``data`` body happens to be an encoded AMQP message would be taken
    for a batch; the SDK never sends that.

    Raises:
        AmqpDecodeError: if the payload is not a well-formed AMQP message.
    """
    return decode_transfer_sized(payload)[0]


def decode_transfer_sized(payload: bytes | memoryview) -> tuple[list[MessageContent], int]:
    """Like :func:`decode_transfer`, also returning the size that counts against the
    maximum message size: the payload's for one message, the sum of the messages' for a
    batch (the SDKs fill batches up to the limit without counting the batch envelope).

    Raises:
        AmqpDecodeError: if the payload is not a well-formed AMQP message.
    """
    sections = _sections(payload)
    parts = _batch_parts(sections)
    if parts is None:
        return [_content(sections)], len(payload)
    return [decode_message(part) for part in parts], sum(len(part) for part in parts)


def encode_message(
    content: MessageContent,
    *,
    delivery_count: int,
    annotations: Mapping[Any, Any],
    ttl_ms: int | None,
    absolute_expiry_time_ms: int | None,
) -> bytes:
    """Encode ``content`` as delivered to a receiver.

    Args:
        content: The stored message.
        delivery_count: Written explicitly into the header, also when 0.
        annotations: Broker annotations (``x-opt-sequence-number`` ...) merged over the
            client's message annotations. Values must already carry their AMQP type
            (e.g. ``proton.timestamp`` for times).
        ttl_ms: Effective time to live for ``header.ttl``; omitted if ``None`` or too large.
        absolute_expiry_time_ms: Written into ``properties.absolute-expiry-time`` if not None.
    """
    header = content.header
    ttl = uint(ttl_ms) if ttl_ms is not None and 0 < ttl_ms <= _MAX_HEADER_TTL_MS else None
    # Every header field is put explicitly: proton.Message would drop delivery-count=0.
    out = bytearray(
        _encode_section(
            HEADER,
            [
                header.durable,
                ubyte(header.priority),
                ttl,
                header.first_acquirer,
                uint(delivery_count),
            ],
        )
    )
    merged = dict(content.annotations)
    merged.update(annotations)
    out += _encode_section(MESSAGE_ANNOTATIONS, merged)
    properties = content.properties
    if absolute_expiry_time_ms is not None:
        fields = list(properties or (None,) * 13)
        fields[8] = timestamp(absolute_expiry_time_ms)
        properties = tuple(fields)
    if properties is not None:
        out += _encode_section(PROPERTIES, list(properties))
    if content.application_properties is not None:
        out += content.application_properties
    out += content.body
    return bytes(out)


def encode_content(content: MessageContent) -> bytes:
    """Encode ``content`` as the client sent it (for storage): no broker annotations."""
    out = bytearray()
    header = content.header
    out += _encode_section(
        HEADER,
        [
            header.durable,
            ubyte(header.priority),
            None if header.ttl_ms is None else uint(header.ttl_ms),
            header.first_acquirer,
            uint(0),
        ],
    )
    if content.annotations:
        out += _encode_section(MESSAGE_ANNOTATIONS, content.annotations)
    if content.properties is not None:
        out += _encode_section(PROPERTIES, list(content.properties))
    if content.application_properties is not None:
        out += content.application_properties
    out += content.body
    return bytes(out)


# --- request/response messages ($cbs and $management) ------------------------------------
# Requests are decoded section by section like client messages (binary map keys included);
# responses are small single-value messages, which proton.Message encodes well.


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request on ``$cbs`` or ``<entity>/$management``.

    Attributes:
        message_id: ``properties.message-id`` (echoed as the response's correlation-id).
        reply_to: ``properties.reply-to`` or ``None``.
        application_properties: Owned copy; keys are ``str``.
        body: The ``amqp-value`` body, owned copy (maps keep ``str`` keys).
    """

    message_id: Any
    reply_to: str | None
    application_properties: dict[str, Any]
    body: Any


def decode_request(payload: bytes) -> Request:
    """Decode a request message.

    Raises:
        AmqpDecodeError: if ``payload`` is not an AMQP message.
    """
    fields: list[Any] = []
    application_properties: dict[str, Any] = {}
    bodies: list[Any] = []
    for code, _, value in _sections(payload, body_values=True):
        if code == PROPERTIES:
            fields = list(value or [])
        elif code == APPLICATION_PROPERTIES:
            if not isinstance(value, (dict, type(None))):
                raise AmqpDecodeError("application-properties must be a map")
            application_properties = {str(k): v for k, v in (value or {}).items()}
        elif code in _BODY:
            bodies.append(value)
    fields += [None] * 5
    reply_to = fields[4]
    return Request(
        message_id=fields[0],
        reply_to=None if reply_to is None else str(reply_to),
        application_properties=application_properties,
        body=bodies[0] if bodies else None,
    )


def encode_response(
    *,
    correlation_id: Any,
    application_properties: Mapping[str, Any],
    body: Any,
) -> bytes:
    """Encode a response: ``correlation-id``, application properties and an ``amqp-value`` body.

    Values must carry their AMQP types (``int32`` status codes, ``symbol`` conditions,
    ``Array`` for typed arrays).
    """
    message = Message(body=body)
    message.correlation_id = correlation_id
    # proton types Message.properties as None-only; it takes a dict of application properties.
    message.properties = cast(Any, dict(application_properties))
    message.inferred = False
    return bytes(message.encode())


def status_properties(
    code: int,
    description: str,
    *,
    code_key: str,
    description_key: str,
    condition: str | None = None,
) -> dict[str, Any]:
    """Application properties of a response: ``int32`` status code, description, condition."""
    props: dict[str, Any] = {code_key: int32(code), description_key: description}
    if condition is not None:
        props["errorCondition"] = symbol(condition)
    return props
