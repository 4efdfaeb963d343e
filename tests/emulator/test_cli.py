"""``python -m emulator``: the connection string, then the certificate path, on stdout;
clean signal shutdown; readable config errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.testing import queue_config


def _start(config: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--config", str(config), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=20)
    if not lines or not lines[0]:
        process.kill()
        pytest.fail(f"no connection string printed; stderr: {process.communicate()[1]}")
    return process, lines[0]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(queue_config("cli-queue")), encoding="utf-8")
    return path


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_prints_connection_string_serves_and_stops_on_signal(
    config_file: Path, stop_signal: signal.Signals
) -> None:
    process, line = _start(config_file)
    try:
        ca_file = process.stdout.readline().strip()  # type: ignore[union-attr]
        connection_string = line.strip()
        assert connection_string.startswith("Endpoint=sb://127.0.0.1:")
        assert connection_string.endswith(
            ";SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;"
            "UseDevelopmentEmulator=true"
        )
        with ServiceBusClient.from_connection_string(connection_string) as client:  # sync SDK
            with client.get_queue_sender("cli-queue") as sender:
                sender.send_messages(ServiceBusMessage("via cli"))
            with client.get_queue_receiver("cli-queue", max_wait_time=5) as receiver:
                [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                receiver.complete_message(message)
        assert str(message) == "via cli"
    finally:
        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert stdout == ""  # the connection string and the certificate were the only lines
    # Line 2: the TLS certificate for the administration client (HTTPS on the same port).
    assert ca_file.endswith("emulator-cert.pem")
    assert "Traceback" not in stderr


def test_custom_key_is_in_the_connection_string(config_file: Path) -> None:
    process, line = _start(config_file, "--key-name", "App", "--key", "k3y")
    process.terminate()
    process.communicate(timeout=20)
    assert "SharedAccessKeyName=App;SharedAccessKey=k3y;" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"UserConfig": {"Namespaces": []}}), "Namespaces"),
        (json.dumps(queue_config("q", LockDuration="PT1X")), "LockDuration: invalid ISO-8601"),
        (json.dumps(queue_config("q", MaxDeliveryCount=0)), "MaxDeliveryCount"),
        (json.dumps(queue_config("q", Colour="blue")), "Colour"),
    ],
)
def test_bad_config_is_one_readable_line_and_exit_code_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--config", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"servicebus-emulator: error: --config {tmp_path / 'nope.json'}: cannot read: "
        "No such file or directory"
    ]


def test_project_config_loads() -> None:
    from emulator.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "config" / "servicebus.json")
    assert [q.name for q in config.queues] == ["audit", "notifications"]
    audit = config.queues[0].properties
    assert audit.requires_duplicate_detection
    assert audit.lock_duration.total_seconds() == 60


def test_unusable_data_dir_is_one_readable_line_and_exit_code_1(
    config_file: Path, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x", encoding="utf-8")
    command = [sys.executable, "-m", "emulator", "--config", str(config_file), "--port", "0"]
    result = subprocess.run(
        [*command, "--data-dir", str(not_a_directory)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"servicebus-emulator: error: --data-dir {not_a_directory}: ")
    assert "Errno" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_argument_is_one_line_without_the_usage_block() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--config", "x.json", "--port", "many"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "servicebus-emulator: error: argument --port: invalid int value: 'many' (see --help)"
    ]


def test_a_port_in_use_names_the_address_without_an_errno(config_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "emulator", "--config", str(config_file), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"servicebus-emulator: error: cannot listen on 127.0.0.1:{port} (--host, --port): "
        "Address already in use"
    )
