"""Broken and hostile clients cannot crash the emulator or hurt other clients.

Each test misbehaves on raw sockets (or with a bare AMQP engine), then checks that a
normal SDK client still sends and receives.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from proton import Disposition, Endpoint, Message

from emulator.server import ServerLimits
from emulator.testing import EmulatorHandle, combine_configs, queue_config, run_emulator
from tests.emulator.conftest import first_logged, receive_n, server_records
from tests.emulator.rawamqp import RawClient, socket_closed_by_peer

_LIMITS = ServerLimits(handshake_timeout=0.5, idle_timeout=1.5, max_outgoing_bytes=256 * 1024)
_SASL_HEADER = b"AMQP\x03\x01\x00\x00"


@pytest.fixture
def guarded() -> Iterator[EmulatorHandle]:
    config = combine_configs(queue_config("q"), queue_config("flood", LockDuration="PT5M"))
    with run_emulator(config, limits=_LIMITS) as handle:
        yield handle


async def _still_serves(emulator: EmulatorHandle, queue: str = "q") -> None:
    async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        async with client.get_queue_sender(queue) as sender:
            await sender.send_messages(ServiceBusMessage("still here"))
        async with client.get_queue_receiver(queue) as receiver:
            [message] = await receive_n(receiver, 1)
            await receiver.complete_message(message)
    assert str(message) == "still here"
    assert emulator.emulator.failure is None


def _connect(emulator: EmulatorHandle) -> socket.socket:
    return socket.create_connection(("127.0.0.1", emulator.port), timeout=5)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00" * 64,
        _SASL_HEADER + b"\xff" * 100,
        b"AMQP\x00\x01\x00\x00" + b"\x00\x00\x00\x08\x02\x00\x00\x00",  # no SASL, empty frame
    ],
)
async def test_garbage_closes_only_that_connection(guarded: EmulatorHandle, garbage: bytes) -> None:
    with _connect(guarded) as sock:
        sock.sendall(garbage)
        assert socket_closed_by_peer(sock, within=5)
    await _still_serves(guarded)


async def test_a_huge_frame_is_refused_without_allocating_it(guarded: EmulatorHandle) -> None:
    with _connect(guarded) as sock:
        # A frame header announcing ~4 GB: proton refuses it against max-frame-size.
        sock.sendall(_SASL_HEADER + struct.pack(">IBBH", 0xFFFFFFF0, 2, 1, 0) + b"\x00" * 1024)
        assert socket_closed_by_peer(sock, within=5)
    client = RawClient(guarded.port)
    try:
        client.open()
        oversized = b"\x00\x53\x10" + b"\x00" * (_LIMITS.max_frame_size + 1024)
        frame = struct.pack(">IBBH", 8 + len(oversized), 2, 0, 0) + oversized
        client.sock.sendall(frame)  # bigger than the max-frame-size the emulator announced
        assert socket_closed_by_peer(client.sock, within=5)
    finally:
        client.close()
    await _still_serves(guarded)


async def test_a_connection_that_never_completes_the_handshake_is_closed(
    guarded: EmulatorHandle,
) -> None:
    with _connect(guarded) as silent, _connect(guarded) as half:
        half.sendall(_SASL_HEADER)  # starts SASL, never picks a mechanism
        assert socket_closed_by_peer(silent, within=5)
        assert socket_closed_by_peer(half, within=5)
    await _still_serves(guarded)


async def test_a_silent_open_connection_is_closed_after_the_idle_timeout(
    guarded: EmulatorHandle,
) -> None:
    client = RawClient(guarded.port)
    try:
        client.open()
        # From now on the client sends nothing at all, not even heartbeats.
        assert socket_closed_by_peer(client.sock, within=10)
    finally:
        client.close()
    await _still_serves(guarded)


async def test_a_protocol_violation_closes_only_that_connection(guarded: EmulatorHandle) -> None:
    client = RawClient(guarded.port)
    try:
        client.open()
        _transfer_on_unattached_link(client)
        assert socket_closed_by_peer(client.sock, within=5)
    finally:
        client.close()
    await _still_serves(guarded)


async def test_a_client_that_never_reads_gets_no_more_deliveries(
    guarded: EmulatorHandle,
) -> None:
    hog = RawClient(guarded.port)
    try:
        hog.open()
        hog.authorize("flood")
        hog.receiver("flood", credit=100_000)
        hog.pump(0.3)
        hog.reading = False  # from here on it never reads its socket
        count, size = 300, 60_000  # 18 MB: far more than socket buffers hold
        async with ServiceBusClient.from_connection_string(guarded.connection_string) as sb:
            async with sb.get_queue_sender("flood") as sender:
                for start in range(0, count, 3):
                    await sender.send_messages(
                        [ServiceBusMessage(b"x" * size) for _ in range(start, start + 3)]
                    )
            # The hog took what fits into its buffers; everything else goes to others.
            async with sb.get_queue_receiver("flood", prefetch_count=50) as receiver:
                received = await receive_n(receiver, 100, within=30)
                for message in received:
                    await receiver.complete_message(message)
    finally:
        hog.close()
    await _still_serves(guarded)


async def test_oversized_messages_are_refused_by_the_server(guarded: EmulatorHandle) -> None:
    client = RawClient(guarded.port)
    try:
        client.open()
        client.authorize("q")
        link = client.sender("q")
        assert link.remote_max_message_size == 256 * 1024
        too_big = client.send(link, Message(body=b"x" * 300_000).encode())
        client.until(lambda: bool(too_big.remote_state))
        assert too_big.remote_state == Disposition.REJECTED
        assert too_big.remote.condition is not None
        assert too_big.remote.condition.name == "amqp:link:message-size-exceeded"
        # Far over the limit: refused while it is still arriving, by detaching the link.
        client.send(link, Message(body=b"x" * 2_000_000).encode())
        client.until(lambda: link.state & Endpoint.REMOTE_CLOSED)
        assert RawClient.condition_name(link) == "amqp:link:message-size-exceeded"
    finally:
        client.close()
    await _still_serves(guarded)


# --- what the emulator logs: a client shutting down is routine, a broken one is not ------


async def test_an_sdk_client_closing_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    with run_emulator(queue_config("q")) as emulator:
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as sb:
            async with sb.get_queue_sender("q") as sender:
                await sender.send_messages(ServiceBusMessage("routine"))
            async with sb.get_queue_receiver("q") as receiver:
                # Peeking opens the receiver's management links: on close the SDK detaches
                # one after ending their session, a late frame the emulator ignores as Azure does.
                assert len(await receiver.peek_messages(1)) == 1
                [message] = await receive_n(receiver, 1)
                await receiver.complete_message(message)
        handler = emulator.emulator.handler
        assert handler is not None
        deadline = time.monotonic() + 10
        while handler._connections:  # the emulator has seen every connection go
            assert time.monotonic() < deadline, "the emulator kept a closed connection"
            await asyncio.sleep(0.05)

    noisy = [r.getMessage() for r in server_records(caplog, logging.INFO)]
    assert noisy == ["stopping: closing 0 connection(s)"]


async def test_a_client_that_vanishes_without_closing_is_noted_not_warned(
    guarded: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    client = RawClient(guarded.port)
    client.open()
    client.close()  # the socket goes, no AMQP close: a killed process looks like this

    assert await first_logged(caplog, logging.INFO) == (
        "client dropped its connection without an AMQP close"
    )
    assert server_records(caplog, logging.WARNING) == []


@pytest.mark.parametrize(
    ("garbage", "condition"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "amqp:connection:framing-error"),
        (_SASL_HEADER + b"\xff" * 100, "amqp:connection:framing-error"),
    ],
)
async def test_a_broken_client_is_still_warned_about(
    guarded: EmulatorHandle, caplog: pytest.LogCaptureFixture, garbage: bytes, condition: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    with _connect(guarded) as sock:
        sock.sendall(garbage)
        assert socket_closed_by_peer(sock, within=5)

    assert (await first_logged(caplog, logging.WARNING)).startswith(
        f"connection error: {condition}"
    )


async def test_a_protocol_violation_is_warned_about(
    guarded: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    client = RawClient(guarded.port)
    try:
        client.open()
        _transfer_on_unattached_link(client)
        assert socket_closed_by_peer(client.sock, within=5)
    finally:
        client.close()

    assert (await first_logged(caplog, logging.WARNING)).startswith("connection error: amqp:")


def _transfer_on_unattached_link(client: RawClient) -> None:
    """Send a transfer on link handle 5, which was never attached (a protocol violation)."""
    transfer = b"\x00\x53\x14\xc0\x08\x03\x52\x05\x52\x00\xa0\x01x" + b"payload"
    client.sock.sendall(struct.pack(">IBBH", 8 + len(transfer), 2, 0, 0) + transfer)
