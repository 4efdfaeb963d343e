"""AMQP values as Python objects: decoding to owned copies, and typed arrays to encode.

proton's ``Data`` does the encoding and decoding; what this module adds is that decoded
values never reference proton's buffers, at any depth.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from proton import UNDESCRIBED, Array, Data, Described, timestamp

__all__ = [
    "AmqpDecodeError",
    "OwnedData",
    "decode_value",
    "long_array",
    "owned",
    "timestamp_array",
    "timestamp_ms",
    "uuid_array",
]

# proton's stubs do not list its own UNDESCRIBED marker as a valid Array descriptor.
_UNDESCRIBED: Any = UNDESCRIBED


class AmqpDecodeError(ValueError):
    """The payload is not a well-formed AMQP message."""


#: proton's decoders by AMQP type, except that ``binary`` is copied to ``bytes``.
_OWNED_GETTERS = {**Data.get_mappings, Data.BINARY: lambda data: bytes(data.get_binary())}


class OwnedData(Data):
    """``proton.Data`` that decodes ``binary`` as ``bytes``, at every depth.

    proton returns binary values as writable ``memoryview`` objects into memory it reuses.
    Such a view cannot be a dict key, so a map with binary keys (legal AMQP; Service Bus
    stores any body) would fail to decode at all; and anything kept after the decoding
    ``Data`` is gone must be a copy anyway. proton's map, list, described and array readers
    call back into :meth:`get_object`, so this one table reaches nested values too.
    """

    get_mappings = _OWNED_GETTERS


def decode_value(encoded: bytes | memoryview) -> Any:
    """Decode one AMQP value (the first, if there are several) to owned Python objects.

    Binary values come back as ``bytes`` at every depth (also as map keys); an empty input
    gives ``None``.

    Raises:
        AmqpDecodeError: if ``encoded`` is not well-formed AMQP, or holds a map key Python
            cannot hash (a list, map or described value).
    """
    if not len(encoded):
        return None
    data = OwnedData()
    try:
        # proton's stub says bytes; any buffer works (cffi from_buffer).
        data.decode(cast(bytes, encoded))
        data.rewind()
        data.next()
        return data.get_object()
    except Exception as exc:
        raise AmqpDecodeError(f"undecodable AMQP value: {exc}") from None


def owned(value: Any) -> Any:
    """Deep-copy a value decoded by proton so it no longer references proton's buffers.

    For values proton has already decoded (a disposition's annotations); where the encoded
    form is at hand, :func:`decode_value` copies while decoding, which also copes with
    binary map keys.
    """
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {owned(k): owned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [owned(v) for v in value]
    if isinstance(value, tuple):
        return tuple(owned(v) for v in value)
    if isinstance(value, Described):
        return Described(owned(value.descriptor), owned(value.value))
    if isinstance(value, Array):
        return Array(value.descriptor, value.type, *(owned(v) for v in value.elements))
    return value


def uuid_array(values: list[uuid.UUID]) -> Array:
    """An undescribed AMQP array of ``uuid``."""
    return Array(_UNDESCRIBED, Data.UUID, *values)


def timestamp_array(values_ms: list[int]) -> Array:
    """An undescribed AMQP array of ``timestamp`` (ms since the epoch)."""
    return Array(_UNDESCRIBED, Data.TIMESTAMP, *(timestamp(v) for v in values_ms))


def timestamp_ms(value_ms: int) -> timestamp:
    """An AMQP ``timestamp`` (ms since the epoch)."""
    return timestamp(value_ms)


def long_array(values: list[int]) -> Array:
    """An undescribed AMQP array of ``long``."""
    return Array(_UNDESCRIBED, Data.LONG, *values)
