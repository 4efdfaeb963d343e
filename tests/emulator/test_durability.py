"""``--data-dir``: queues survive a restart and a ``kill -9`` without losing anything that was
acknowledged; unsettled messages come back with their delivery count raised by one.
"""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageState, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from emulator.testing import combine_configs, queue_config, run_emulator
from tests.emulator.conftest import receive_n, seq

CONFIG = combine_configs(
    queue_config("work", MaxDeliveryCount=5),
    queue_config("once", RequiresDuplicateDetection=True),
    queue_config("sessions", RequiresSession=True),
)


@contextmanager
def _emulator_process(config: Path, data_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--config",
            str(config),
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=20)
    try:
        if not lines or not lines[0]:
            process.kill()
            pytest.fail(f"no connection string; stderr: {process.communicate()[1]}")
        yield process, lines[0].strip()
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=20)


async def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    data = tmp_path / "data"
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    with _emulator_process(config, data) as (process, connection_string):
        client = ServiceBusClient.from_connection_string(connection_string)
        async with (
            client,
            client.get_queue_sender("work") as sender,
            client.get_queue_sender("once") as once,
            client.get_queue_sender("sessions") as session_sender,
            client.get_queue_receiver("work") as receiver,
        ):
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(40)])
            for i in range(40, 50):
                await sender.send_messages(ServiceBusMessage(f"m{i}"))
            [scheduled] = await sender.schedule_messages(ServiceBusMessage("later"), later)
            await once.send_messages(ServiceBusMessage("first", message_id="dup"))
            await session_sender.send_messages(ServiceBusMessage("in session", session_id="s"))
            async with client.get_queue_receiver("sessions", session_id="s") as session:
                await session.session.set_state(b"checkpoint")
            received = await receive_n(receiver, 10)
            for message in received[:5]:
                await receiver.complete_message(message)
            await receiver.dead_letter_message(received[5], reason="poison")
            await receiver.defer_message(received[6])
            deferred_number = seq(received[6])
            # received[7:10] are locked and unsettled when the process dies.
            locked = {seq(m) for m in received[7:10]}
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=20)

    with _emulator_process(config, data) as (_, connection_string):
        client = ServiceBusClient.from_connection_string(connection_string)
        async with client, client.get_queue_receiver("work") as receiver:
            peeked = await receiver.peek_messages(max_message_count=100, sequence_number=1)
            # Completed and dead-lettered ones are gone; the scheduled one is there.
            assert len(peeked) == 50 - 5 - 1 + 1
            states = {seq(m): m.state for m in peeked}
            assert states[scheduled] == ServiceBusMessageState.SCHEDULED
            assert states[deferred_number] == ServiceBusMessageState.DEFERRED
            counts = {seq(m): m.delivery_count for m in peeked}
            assert {counts[n] for n in locked} == {1}  # a lost lock counts as a delivery

            active = await receive_n(receiver, 50 - 7)
            assert sorted(str(m) for m in active) == sorted(f"m{i}" for i in range(7, 50))
            [deferred] = await receiver.receive_deferred_messages([deferred_number])
            assert str(deferred) == "m6"

            async with client.get_queue_receiver(
                "work", sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as dlq:
                dead = await dlq.peek_messages(max_message_count=10, sequence_number=1)
                assert [str(m) for m in dead] == ["m5"]
            async with client.get_queue_sender("work") as sender:
                await sender.send_messages(ServiceBusMessage("after restart"))
            [new] = await receive_n(receiver, 1)
            assert seq(new) > scheduled  # numbering continues

            async with client.get_queue_sender("once") as once:  # duplicate history survived
                await once.send_messages(ServiceBusMessage("again", message_id="dup"))
            async with client.get_queue_receiver("once") as once_receiver:
                kept = await once_receiver.peek_messages(max_message_count=10, sequence_number=1)
                assert [str(m) for m in kept] == ["first"]

            async with client.get_queue_receiver("sessions", session_id="s") as session:
                assert await session.session.get_state() == b"checkpoint"
                [message] = await receive_n(session, 1)
                assert str(message) == "in session"


async def test_run_emulator_with_data_dir_keeps_queues_across_restarts(tmp_path: Path) -> None:
    config = queue_config("kept")
    with run_emulator(config, data_dir=tmp_path) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string)
        async with client, client.get_queue_sender("kept") as sender:
            await sender.send_messages([ServiceBusMessage(f"k{i}") for i in range(3)])
    assert (tmp_path / "servicebus-emulator.sqlite3").exists()
    with run_emulator(config, data_dir=tmp_path) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string)
        async with client, client.get_queue_receiver("kept") as receiver:
            messages = await receive_n(receiver, 3)
            assert [(str(m), m.sequence_number) for m in messages] == [
                ("k0", 1),
                ("k1", 2),
                ("k2", 3),
            ]
            for message in messages:
                await receiver.complete_message(message)
    with run_emulator(config, data_dir=tmp_path) as emulator:
        client = ServiceBusClient.from_connection_string(emulator.connection_string)
        async with client, client.get_queue_receiver("kept") as receiver:
            assert await receiver.peek_messages(max_message_count=10, sequence_number=1) == []


def test_without_data_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with run_emulator(queue_config("memory")):
        pass
    assert list(tmp_path.iterdir()) == []
