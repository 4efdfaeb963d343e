"""A port probe or health check (connect, then close without a byte) is noted, not warned.

Load balancers and orchestrators check a port by opening a TCP connection and closing it;
proton reports that as ``amqp:connection:framing-error No protocol header found``, which
the emulator logs at INFO. A client that did send bytes and broke the protocol header is
still a WARNING.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from emulator.server import ServerLimits
from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import eventually, first_logged, server_records
from tests.emulator.rawamqp import socket_closed_by_peer

_PROBE = "a client connected and closed without sending a byte (a port probe?)"


@pytest.fixture
def probed(caplog: pytest.LogCaptureFixture) -> Iterator[EmulatorHandle]:
    """An emulator whose wire-layer log is captured from DEBUG up; a short handshake
    timeout so that a silent connection is closed quickly."""
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    with run_emulator(queue_config("q"), limits=ServerLimits(handshake_timeout=0.5)) as handle:
        yield handle


def _connect(emulator: EmulatorHandle) -> socket.socket:
    return socket.create_connection(("127.0.0.1", emulator.port), timeout=5)


async def test_a_connection_closed_before_any_byte_is_logged_at_info(
    probed: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    _connect(probed).close()

    assert await first_logged(caplog, logging.INFO) == _PROBE
    assert server_records(caplog, logging.WARNING) == []


@pytest.mark.parametrize(
    ("sent", "description"),
    [
        (b"AMQP\x01\x01\x00\x0a", "Incompatible AMQP connection"),  # protocol id 1: TLS
        (b"AM", "No protocol header found"),  # a header cut short
    ],
)
async def test_a_bad_protocol_header_is_still_warned_about(
    probed: EmulatorHandle, caplog: pytest.LogCaptureFixture, sent: bytes, description: str
) -> None:
    with _connect(probed) as sock:
        sock.sendall(sent)
        sock.shutdown(socket.SHUT_WR)
        assert socket_closed_by_peer(sock, within=5)

    warning = await first_logged(caplog, logging.WARNING)
    assert warning.startswith("connection error: amqp:connection:framing-error")
    assert description in warning
    assert _PROBE not in [r.getMessage() for r in server_records(caplog, logging.INFO)]


async def test_a_silent_connection_closed_by_the_handshake_timeout_is_logged_once(
    probed: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    with _connect(probed) as silent:
        assert socket_closed_by_peer(silent, within=5)  # the emulator closed it, not the client

    assert await first_logged(caplog, logging.INFO) == (
        "closing a connection that did not open within the handshake timeout"
    )
    await _until_held(probed, 0)  # the emulator has seen it go: nothing else was said
    assert [r.getMessage() for r in server_records(caplog, logging.INFO)] == [
        "closing a connection that did not open within the handshake timeout"
    ]


async def _until_held(emulator: EmulatorHandle, count: int, within: float = 10.0) -> None:
    """Wait until the emulator holds exactly ``count`` connections."""
    handler = emulator.emulator.handler
    assert handler is not None

    async def held() -> bool:
        return len(handler._connections) == count

    await eventually(held, within=within)


async def test_a_connection_refused_over_the_limit_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="emulator.server")
    with run_emulator(queue_config("q"), limits=ServerLimits(max_connections=1)) as emulator:
        with _connect(emulator) as first, _connect(emulator) as refused:
            first.sendall(b"AMQP\x03\x01\x00\x00")  # the SASL header: a client, kept open
            assert socket_closed_by_peer(refused, within=5)
            assert await first_logged(caplog, logging.INFO) == "refusing a connection: 1 open"
            await _until_held(emulator, 1)  # the refused one is gone, the first still open
        assert [r.getMessage() for r in server_records(caplog, logging.INFO)] == [
            "refusing a connection: 1 open"
        ]
