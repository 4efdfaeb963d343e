"""Every AMQP body kind round-trips byte for byte, in memory and through ``--data-dir``.

Service Bus stores any AMQP body (one or more ``data`` sections, ``amqp-sequence``
sections, or one ``amqp-value`` of any type) and hands it back unchanged. The SDK sends
and receives here; a spy on its own encoder and decoder records the wire bytes, so the
check is on the body sections exactly as they left and came back, not only on the decoded
Python values (which lose AMQP types: ``ubyte`` and ``long`` both decode as ``int``).

The SDK (7.15) expresses typed values as ``{TYPE: AMQPTypes.x, VALUE: v}``, but only nested
in a list or map, and maps with keys Python cannot hash (symbols, described values) as a
typed map of key/value pairs; it leaves out the body of a falsy ``value_body`` (``None``,
``False``, ``0``, empty), so ``null`` and ``false`` are sent nested too. Values it cannot
express (``char``, ``decimal32``, ``decimal64``) or cannot decode (``decimal128``, maps with
list or map keys) are sent and received with a bare AMQP engine instead.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp import _decode, _encode
from azure.servicebus._pyamqp.aio import _receiver_async, _sender_async
from azure.servicebus._pyamqp.message import Message as SdkMessage
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpAnnotatedMessage, AmqpMessageBodyType
from proton import (
    Data,
    Described,
    Disposition,
    char,
    decimal32,
    decimal64,
    decimal128,
    symbol,
    ulong,
)

from emulator import codec
from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import receive_n, seq
from tests.emulator.rawamqp import RawClient

_BODY_SECTIONS = (0x75, 0x76, 0x77)  # data, amqp-sequence, amqp-value
DATA, SEQUENCE, VALUE_BODY = (
    AmqpMessageBodyType.DATA,
    AmqpMessageBodyType.SEQUENCE,
    AmqpMessageBodyType.VALUE,
)


def typed(kind: str, value: Any) -> dict[str, Any]:
    """The SDK's notation for a value of an explicit AMQP type."""
    return {TYPE: kind, VALUE: value}


def pairs(*items: tuple[Any, Any]) -> dict[str, Any]:
    """An AMQP map given as key/value pairs, so that keys need not be hashable."""
    return typed(AMQPTypes.map, list(items))


_UUID = uuid.UUID("9a1f7c2e-3b4d-4e5f-8a6b-7c8d9e0f1a2b")
_WHEN = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
_WHEN_MS = 1714979289123
_DESCRIBED_KEY = typed(AMQPTypes.described, (typed(AMQPTypes.symbol, b"com.example:key"), "k"))


def nested(kind: str, value: Any) -> dict[str, Any]:
    """A typed value inside a list body: the SDK honours its typed notation only nested
    (a top-level typed value is encoded as a map with TYPE and VALUE keys)."""
    return {"value_body": [typed(kind, value)]}


#: (SDK message keyword arguments, expected ``body_type``, expected decoded ``body``). The
#: SDK's decoder returns AMQP strings and symbols as UTF-8 ``bytes`` (also from Azure).
CASES = [
    pytest.param({"data_body": b"\x00\x01\xffbinary"}, DATA, [b"\x00\x01\xffbinary"], id="data"),
    pytest.param(
        {"data_body": [b"one", b"\x00Sw\xa1\x01x", b"three"]},
        DATA,
        [b"one", b"\x00Sw\xa1\x01x", b"three"],
        id="data-several-sections",
    ),
    pytest.param({"sequence_body": [1, "two", b"3"]}, SEQUENCE, [[1, b"two", b"3"]], id="sequence"),
    pytest.param(
        {"sequence_body": [[1], ["a", [2, {b"k": None}]], []]},
        SEQUENCE,
        [[1], [b"a", [2, {b"k": None}]], []],
        id="sequence-list-of-lists",
    ),
    pytest.param(nested(AMQPTypes.null, None), VALUE_BODY, [None], id="null"),
    pytest.param({"value_body": True}, VALUE_BODY, True, id="bool-true"),
    pytest.param(nested(AMQPTypes.boolean, False), VALUE_BODY, [False], id="bool-false"),
    pytest.param(nested(AMQPTypes.ubyte, 255), VALUE_BODY, [255], id="ubyte"),
    pytest.param(nested(AMQPTypes.ushort, 65535), VALUE_BODY, [65535], id="ushort"),
    pytest.param(nested(AMQPTypes.uint, 2**32 - 1), VALUE_BODY, [2**32 - 1], id="uint"),
    pytest.param(nested(AMQPTypes.ulong, 2**64 - 1), VALUE_BODY, [2**64 - 1], id="ulong"),
    pytest.param(nested(AMQPTypes.byte, -128), VALUE_BODY, [-128], id="byte"),
    pytest.param(nested(AMQPTypes.short, -32768), VALUE_BODY, [-32768], id="short"),
    pytest.param({"value_body": -(2**31)}, VALUE_BODY, -(2**31), id="int"),
    pytest.param(nested(AMQPTypes.long, -(2**63)), VALUE_BODY, [-(2**63)], id="long"),
    pytest.param(nested(AMQPTypes.float, 1.5), VALUE_BODY, [1.5], id="float"),
    pytest.param({"value_body": 2.25}, VALUE_BODY, 2.25, id="double"),
    pytest.param({"value_body": _WHEN}, VALUE_BODY, _WHEN_MS, id="timestamp"),
    pytest.param({"value_body": _UUID}, VALUE_BODY, _UUID, id="uuid"),
    pytest.param({"value_body": b"\x00\xffraw"}, VALUE_BODY, b"\x00\xffraw", id="binary"),
    pytest.param(
        {"value_body": "h\u00e9llo \u2603"}, VALUE_BODY, "h\u00e9llo \u2603".encode(), id="string"
    ),
    pytest.param(nested(AMQPTypes.symbol, b"sym"), VALUE_BODY, [b"sym"], id="symbol"),
    pytest.param(
        {"value_body": [1, "a", None, [b"x"]]}, VALUE_BODY, [1, b"a", None, [b"x"]], id="list"
    ),
    pytest.param({"value_body": {"a": 1, "b": [2]}}, VALUE_BODY, {b"a": 1, b"b": [2]}, id="map"),
    pytest.param(nested(AMQPTypes.array, [1, 2, 3]), VALUE_BODY, [[1, 2, 3]], id="array"),
    pytest.param(
        {"value_body": (typed(AMQPTypes.ulong, 0x1234), "inner")},
        VALUE_BODY,
        b"inner",  # the SDK's decoder keeps the value and drops the descriptor
        id="described",
    ),
    pytest.param({"value_body": {b"key": 1}}, VALUE_BODY, {b"key": 1}, id="map-binary-key"),
    pytest.param(
        {"value_body": {b"outer": {b"inner": [{b"deep": b"v"}], "s": {1: None}}}},
        VALUE_BODY,
        {b"outer": {b"inner": [{b"deep": b"v"}], b"s": {1: None}}},
        id="nested-maps-binary-keys",
    ),
    pytest.param(
        {
            "value_body": [
                pairs(
                    (typed(AMQPTypes.symbol, b"sym"), 1),
                    (b"bin", pairs((typed(AMQPTypes.symbol, b"inner"), {b"x": 2}))),
                    (_DESCRIBED_KEY, 3),
                )
            ]
        },
        VALUE_BODY,
        [{b"sym": 1, b"bin": {b"inner": {b"x": 2}}, b"k": 3}],
        id="map-symbol-binary-described-keys",
    ),
    pytest.param(
        {"sequence_body": [[{b"key": [b"v"]}, pairs((typed(AMQPTypes.symbol, b"s"), None))]]},
        SEQUENCE,
        [[{b"key": [b"v"]}, {b"s": None}]],
        id="sequence-of-maps-with-binary-and-symbol-keys",
    ),
]


@dataclass
class Wire:
    """Payloads the SDK encoded (sent) and decoded (received), in order."""

    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    """Record the SDK's wire payloads, calling through to its own codec."""
    recorded = Wire()

    def encode_payload(output: bytearray, message: Any) -> Any:
        result = _encode.encode_payload(output, message)
        recorded.sent.append(bytes(output))
        return result

    def decode_payload(buffer: memoryview) -> Any:
        recorded.received.append(bytes(buffer))
        return _decode.decode_payload(buffer)

    monkeypatch.setattr(_sender_async, "encode_payload", encode_payload)
    monkeypatch.setattr(_receiver_async, "decode_payload", decode_payload)
    return recorded


def _sections(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """``(section code, raw bytes)`` of an encoded message, without decoding the values."""
    data = Data()
    position = 0
    while position < len(payload):
        data.clear()
        consumed = data.decode(payload[position:])
        data.rewind()
        data.next()
        data.enter()
        data.next()
        yield data.get_ulong(), payload[position : position + consumed]
        position += consumed


def body_bytes(payload: bytes) -> bytes:
    """The raw body sections of an encoded message."""
    return b"".join(raw for code, raw in _sections(payload) if code in _BODY_SECTIONS)


def delivered(payloads: list[bytes]) -> list[bytes]:
    """The payloads that are delivered messages (they carry a header; replies do not)."""
    return [p for p in payloads if any(code == 0x70 for code, _ in _sections(p))]


def _sequence_number(payload: bytes) -> int:
    annotations = _decode.decode_payload(memoryview(payload)).message_annotations or {}
    return int(annotations[b"x-opt-sequence-number"])


def decoded_body(message: ServiceBusReceivedMessage) -> Any:
    body = message.body
    return body if message.body_type == VALUE_BODY else list(body)


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    with run_emulator(queue_config("bodies")) as handle:
        yield handle


@pytest.mark.parametrize(("kwargs", "body_type", "body"), CASES)
async def test_body_round_trips_byte_for_byte(
    emulator: EmulatorHandle, wire: Wire, kwargs: dict[str, Any], body_type: Any, body: Any
) -> None:
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        async with client.get_queue_sender("bodies") as sender:
            before = len(wire.sent)
            await sender.send_messages(AmqpAnnotatedMessage(**kwargs))
            [sent] = wire.sent[before:]
        async with client.get_queue_receiver("bodies") as receiver:
            before = len(wire.received)
            [message] = await receive_n(receiver, 1)
            [received] = delivered(wire.received[before:])
            await receiver.complete_message(message)

    assert body_bytes(sent)  # the SDK did send a body section
    assert body_bytes(received) == body_bytes(sent)
    assert message.body_type == body_type
    assert decoded_body(message) == body


async def test_every_body_survives_a_restart_with_data_dir(tmp_path: Path, wire: Wire) -> None:
    cases = [cast(tuple[str, dict[str, Any], Any, Any], (p.id, *p.values)) for p in CASES]
    config = queue_config("bodies")
    with run_emulator(config, data_dir=tmp_path) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string)
        async with client, client.get_queue_sender("bodies") as sender:
            before = len(wire.sent)
            for _, kwargs, _, _ in cases:
                await sender.send_messages(AmqpAnnotatedMessage(**kwargs))
            sent = wire.sent[before:]
    assert len(sent) == len(cases)

    with run_emulator(config, data_dir=tmp_path) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string)
        async with client, client.get_queue_receiver("bodies") as receiver:
            before = len(wire.received)
            messages = sorted(await receive_n(receiver, len(cases)), key=seq)
            received = delivered(wire.received[before:])
            for message in messages:
                await receiver.complete_message(message)

    by_sequence = {_sequence_number(p): p for p in received}
    for (case, _, body_type, body), payload, message in zip(cases, sent, messages, strict=True):
        assert body_bytes(by_sequence[seq(message)]) == body_bytes(payload), case
        assert (message.body_type, decoded_body(message)) == (body_type, body), case


# --- values the SDK cannot express or decode: a bare AMQP engine on both ends --------------


def _encoded(*sections: tuple[int, Any]) -> bytes:
    data = Data()
    for code, value in sections:
        data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def _value_section(value: Any) -> bytes:
    return _encoded((0x77, value))


def _map_with_compound_keys() -> bytes:
    """An ``amqp-value`` map keyed by a list and by a map (legal AMQP, unhashable in Python)."""
    data = Data()
    data.put_described()
    data.enter()
    data.put_ulong(0x77)
    data.put_map()
    data.enter()
    data.put_list()
    data.enter()
    data.put_binary(b"k")
    data.put_int(1)
    data.exit()
    data.put_string("list key")
    data.put_object({b"inner": 1})
    data.put_string("map key")
    data.exit()
    data.exit()
    return bytes(data.encode())


def _sdk_value_section(value: Any) -> bytes:
    """An ``amqp-value`` section as the SDK encodes it."""
    return body_bytes(bytes(_encode.encode_payload(bytearray(), SdkMessage(value=value))))


WIRE_ONLY = [
    # The SDK encodes decimal128 but its own decoder refuses what it encoded (7.15).
    pytest.param(_sdk_value_section(Decimal("-3.14")), id="decimal128-from-the-sdk"),
    pytest.param(_value_section(char("\u2603")), id="char"),
    pytest.param(_value_section(decimal32(0x2238_0001)), id="decimal32"),
    pytest.param(_value_section(decimal64(0x2238_0000_0000_0001)), id="decimal64"),
    pytest.param(_value_section(decimal128(bytes(range(16)))), id="decimal128"),
    pytest.param(_value_section(symbol("plain-symbol")), id="symbol"),
    pytest.param(
        _value_section(Described(symbol("com.example:d"), {b"k": b"v"})), id="described-map"
    ),
    pytest.param(_map_with_compound_keys(), id="map-with-list-and-map-keys"),
]


@pytest.mark.parametrize("body", WIRE_ONLY)
async def test_values_outside_the_sdk_round_trip_byte_for_byte(
    emulator: EmulatorHandle, body: bytes
) -> None:
    payload = _encoded((0x73, [b"id"])) + body
    client = RawClient(emulator.port)
    try:
        client.open()
        client.authorize("bodies")
        link = client.sender("bodies")
        delivery = client.send(link, payload)
        client.until(lambda: bool(delivery.remote_state))
        assert delivery.remote_state == Disposition.ACCEPTED
        receiver = client.receiver("bodies", credit=1)
        client.until(lambda: receiver.current is not None and not receiver.current.partial)
        got = receiver.recv(receiver.current.pending)
        assert got is not None
    finally:
        client.close()
    assert body_bytes(got) == body


def test_codec_decodes_binary_keys_in_every_section() -> None:
    """Binary keys in annotations, application properties and bodies decode as ``bytes``."""
    payload = _encoded(
        (0x72, {symbol("x-opt-custom"): {b"bin": [{b"nested": b"v"}]}}),
        (0x74, {"prop": {b"k": 1}}),
        (0x77, {b"key": {b"inner": [b"x"]}}),
    )
    content = codec.decode_message(payload)
    assert content.annotations == {symbol("x-opt-custom"): {b"bin": [{b"nested": b"v"}]}}
    assert content.application_properties_dict() == {"prop": {b"k": 1}}
    assert body_bytes(content.body) == body_bytes(payload)
    request = codec.decode_request(payload)
    assert request.body == {b"key": {b"inner": [b"x"]}}
