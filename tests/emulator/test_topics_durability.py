"""Topics with ``--data-dir``: subscriptions' messages and the topic's scheduled messages and
duplicate-detection history survive a restart; the CLI refuses a bad filter in one line."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

from azure.servicebus import ServiceBusMessage, ServiceBusMessageState
from azure.servicebus.aio import ServiceBusClient

from emulator.config import load_config
from emulator.testing import (
    combine_configs,
    run_emulator,
    sql_rule,
    subscription_config,
    topic_config,
)
from tests.emulator.conftest import receive_n, receive_none

CONFIG = combine_configs(
    topic_config(
        "events",
        "all",
        subscription_config("red", sql_rule("red", "color = 'red'", action="SET seen = 1")),
        RequiresDuplicateDetection=True,
    ),
)


async def test_subscriptions_survive_a_restart(tmp_path: Path) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with run_emulator(CONFIG, data_dir=tmp_path) as sb:
        async with (
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
            client.get_topic_sender("events") as sender,
        ):
            await sender.send_messages(
                [
                    ServiceBusMessage("r", message_id="1", application_properties={"color": "red"}),
                    ServiceBusMessage("b", message_id="2", application_properties={"color": "b"}),
                ]
            )
            [scheduled] = await sender.schedule_messages(ServiceBusMessage("later"), later)
            async with client.get_subscription_receiver("events", "all") as receiver:
                [first, _] = await receive_n(receiver, 2)
                await receiver.complete_message(first)

    with run_emulator(CONFIG, data_dir=tmp_path) as sb:
        async with (
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
            client.get_topic_sender("events") as sender,
        ):
            await sender.send_messages(ServiceBusMessage("again", message_id="1"))  # duplicate
            async with client.get_subscription_receiver("events", "all") as receiver:
                [left] = await receive_n(receiver, 1)
                assert str(left) == "b"
                assert left.delivery_count == 1  # its lock was lost with the process
                await receiver.complete_message(left)
                await receive_none(receiver, 0.2)
            async with client.get_subscription_receiver("events", "red") as receiver:
                [red] = await receive_n(receiver, 1)
                assert str(red) == "r"
                assert (red.application_properties or {})[b"seen"] == 1
                await receive_none(receiver, 0.2)
            # The scheduled message is still held by the topic; cancelling it works.
            await sender.cancel_scheduled_messages(scheduled)


def test_example_topic_config_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "servicebus-topics.example.json"
    config = load_config(path)
    [topic] = config.topics
    assert [s.name for s in topic.subscriptions] == ["analytics", "siem", "per-recipient"]
    assert [r.name for r in topic.subscriptions[0].rules] == ["$Default"]


def test_bad_filter_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    config = topic_config("t", subscription_config("s", sql_rule("r", "color = = 'red'")))
    path = tmp_path / "Config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--config", str(path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"servicebus-emulator: error: --config {path}: "
        "UserConfig.Namespaces.0.Topics.0.Subscriptions.0.Rules.0: "
        "SqlFilter \"color = = 'red'\": unexpected '=' at position 8"
    ]


async def test_a_message_scheduled_in_the_past_is_copied_at_once() -> None:
    with run_emulator(CONFIG) as sb:
        async with (
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
            client.get_topic_sender("events") as sender,
        ):
            past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
            await sender.schedule_messages(ServiceBusMessage("now"), past)
            async with client.get_subscription_receiver("events", "all") as receiver:
                [peeked] = await receiver.peek_messages(max_message_count=5)
                assert peeked.state == ServiceBusMessageState.ACTIVE
