"""Frames a client sends on a session it has already ended are ignored, as Azure does.

The Python SDK closes a receiver that used its ``$management`` links by ending the session
and then detaching one of those links on it. An AMQP engine that follows the letter of the
spec answers "no such channel" and drops the connection; Azure ignores the late frame.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from proton import Data, Described, Disposition, Endpoint, Message, uint, ulong

from emulator.server.ended_channels import EndedChannelFilter
from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import receive_n
from tests.emulator.rawamqp import RawClient, socket_closed_by_peer

_BEGIN, _ATTACH, _DETACH, _END, _CLOSE = 0x11, 0x12, 0x16, 0x17, 0x18
_AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
_SASL_HEADER = b"AMQP\x03\x01\x00\x00"


def _frame(channel: int, code: int, fields: list[Any], frame_type: int = 0) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), fields))
    body = bytes(data.encode())
    return struct.pack(">IBBH", 8 + len(body), 2, frame_type, channel) + body


@pytest.fixture
def emulator() -> Any:
    with run_emulator(queue_config("q")) as handle:
        yield handle


async def test_an_sdk_receiver_that_used_management_closes_cleanly(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        async with client.get_queue_sender("q") as sender:
            await sender.send_messages([ServiceBusMessage("one"), ServiceBusMessage("two")])
        async with client.get_queue_receiver("q") as receiver:
            assert len(await receiver.peek_messages(1)) == 1  # opens $management
        async with client.get_queue_receiver("q") as receiver:  # the same client again
            [message] = await receive_n(receiver, 1)
            await receiver.renew_message_lock(message)  # opens $management
            await receiver.complete_message(message)
        handler = emulator.emulator.handler
        assert handler is not None
        deadline = time.monotonic() + 10
        while handler._connections:
            assert time.monotonic() < deadline, "the emulator kept a closed connection"
            await asyncio.sleep(0.05)

    errors = [
        r.getMessage()
        for r in caplog.records
        if "no such channel" in r.getMessage() or "connection error" in r.getMessage()
    ]
    assert errors == []
    sdk_warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("azure") and r.levelno >= logging.WARNING
    ]
    assert sdk_warnings == []


def test_a_detach_after_end_leaves_the_connection_open(emulator: EmulatorHandle) -> None:
    client = RawClient(emulator.port)
    try:
        client.open()
        client.authorize("q")
        client.sender("q")
        client.session.close()
        client.until(lambda: client.session.state & Endpoint.REMOTE_CLOSED)
        # What the SDK does: detach a link of the session it has just ended.
        client.sock.sendall(_frame(0, _DETACH, [uint(0), False]))
        client.pump(0.3)
        assert not client.connection.state & Endpoint.REMOTE_CLOSED

        # The connection still works, also on a new session.
        client.session = client.connection.session()
        client.session.open()
        client.authorize("q")
        link = client.sender("q")
        delivery = client.send(link, Message(body="after").encode())
        client.until(lambda: bool(delivery.remote_state))
        assert delivery.remote_state == Disposition.ACCEPTED
        assert not client.connection.state & Endpoint.REMOTE_CLOSED
    finally:
        client.close()


def test_a_close_after_end_on_channel_0_is_answered(emulator: EmulatorHandle) -> None:
    # rhea (the JavaScript SDK) ends its session on channel 0, then closes the connection
    # on channel 0: the CLOSE belongs to the connection and must reach the engine.
    client = RawClient(emulator.port)
    try:
        client.open()
        client.session.close()
        client.until(lambda: client.session.state & Endpoint.REMOTE_CLOSED)
        client.connection.close()
        client.until(lambda: client.connection.state & Endpoint.REMOTE_CLOSED)
        assert client.connection.remote_condition is None
    finally:
        client.close()


def test_a_frame_on_a_channel_never_begun_still_closes_the_connection(
    emulator: EmulatorHandle,
) -> None:
    client = RawClient(emulator.port)
    try:
        client.open()
        client.sock.sendall(_frame(7, _DETACH, [uint(0), True]))
        assert socket_closed_by_peer(client.sock, within=5)
    finally:
        client.close()


# --- the filter on its own: any split of the byte stream gives the same result -------------


def _stream() -> tuple[bytes, bytes]:
    """(what a client sends, what the AMQP engine should see)."""
    sasl = _SASL_HEADER + _frame(0, 0x41, [None], frame_type=1)
    opened = _AMQP_HEADER + _frame(0, 0x10, ["c"]) + _frame(0, _BEGIN, [None, uint(0)])
    attach = _frame(0, _ATTACH, ["l", uint(0), False])
    end = _frame(0, _END, [])
    late = _frame(0, _DETACH, [uint(0), True]) + struct.pack(">IBBH", 8, 2, 0, 0)
    again = _frame(0, _BEGIN, [None, uint(0)]) + _frame(0, _DETACH, [uint(0), True])
    other = _frame(1, _DETACH, [uint(3), True])
    ended_again = _frame(0, _END, [])
    close = _frame(0, _CLOSE, [])  # the connection's, on the ended channel 0: never dropped
    sent = sasl + opened + attach + end + late + again + other + ended_again + close
    expected = (
        sasl
        + opened
        + attach
        + end
        + struct.pack(">IBBH", 8, 2, 0, 0)
        + again
        + other
        + ended_again
        + close
    )
    return sent, expected


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 1 << 20])
def test_the_filter_drops_only_frames_on_ended_channels(chunk: int) -> None:
    sent, expected = _stream()
    frames = EndedChannelFilter(max_frame_size=65536)
    passed = b"".join(frames.feed(sent[i : i + chunk]) for i in range(0, len(sent), chunk))
    assert passed == expected
    assert frames.held == 0


@pytest.mark.parametrize(
    "stream",
    [
        b"\x16\x03\x01\x02\x00" + b"tls client hello",
        b"GET / HTTP/1.1\r\n\r\n",
        _AMQP_HEADER + _frame(0, _END, []) + struct.pack(">IBBH", 0xFFFFFFF0, 2, 0, 0) + b"x",
        _AMQP_HEADER + _frame(0, _END, []) + struct.pack(">IBBH", 4, 2, 0, 0) + b"junk",
    ],
    ids=["tls", "http", "huge-frame-after-end", "short-frame-after-end"],
)
def test_the_filter_passes_what_it_cannot_parse_for_the_engine_to_refuse(stream: bytes) -> None:
    frames = EndedChannelFilter(max_frame_size=65536)
    assert b"".join(frames.feed(stream[i : i + 3]) for i in range(0, len(stream), 3)) == stream
