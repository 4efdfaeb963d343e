"""``emulator.testing.run_emulator``: the harness the rest of the test suite builds on."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import receive_n


def _port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_default_config_serves_the_project_queues() -> None:
    with run_emulator() as emulator:
        assert emulator.host == "127.0.0.1"
        assert f"sb://127.0.0.1:{emulator.port};" in emulator.connection_string
        async with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
            for queue in ("audit", "notifications"):
                async with client.get_queue_sender(queue) as sender:
                    await sender.send_messages(ServiceBusMessage(queue))
                async with client.get_queue_receiver(queue) as receiver:
                    [message] = await receive_n(receiver, 1)
                    assert str(message) == queue
                    await receiver.complete_message(message)


def test_config_from_a_path_and_ports_are_released(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(queue_config("from-file")), encoding="utf-8")
    with run_emulator(path) as first, run_emulator(path) as second:
        assert first.port != second.port
        assert _port_is_open(first.port)
        port = first.port
    assert not _port_is_open(port)


async def test_stopping_disconnects_clients() -> None:
    with run_emulator(queue_config("q")) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string, retry_total=0)
        sender = client.get_queue_sender("q")
        await sender.send_messages(ServiceBusMessage("before stop"))
    assert emulator.emulator.wait(timeout=0)  # the reactor thread has ended
    try:
        with pytest.raises(ServiceBusError):
            await sender.send_messages(ServiceBusMessage("after stop"))
    finally:
        await client.close()


@pytest.mark.servicebus_config(queue_config("from-marker"))
async def test_pytest_plugin_fixture_uses_the_marker_config(
    servicebus_emulator: EmulatorHandle,
) -> None:
    async with ServiceBusClient.from_connection_string(
        servicebus_emulator.connection_string
    ) as client:
        async with client.get_queue_sender("from-marker") as sender:
            await sender.send_messages(ServiceBusMessage("via plugin"))
        async with client.get_queue_receiver("from-marker") as receiver:
            [message] = await receive_n(receiver, 1)
            await receiver.complete_message(message)
    assert str(message) == "via plugin"
