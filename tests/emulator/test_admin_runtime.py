"""Entities created through the administration API work like configured ones: AMQP send
and receive on the same port, dead-lettering, rules, forwarding, runtime counts, deletion
detaching receivers, and persistence across a restart with ``--data-dir``."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.exceptions import ServiceBusError
from azure.servicebus.management import CorrelationRuleFilter, SqlRuleAction, SqlRuleFilter

from emulator.testing import EmulatorHandle, queue_config, run_emulator
from tests.emulator.conftest import eventually, receive_n, receive_none


@asynccontextmanager
async def _admin(sb: EmulatorHandle) -> AsyncIterator[ServiceBusAdministrationClient]:
    async with ServiceBusAdministrationClient.from_connection_string(
        sb.connection_string, connection_verify=sb.ca_file
    ) as client:
        yield client


async def test_runtime_counts(tmp_path: Path) -> None:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with run_emulator(queue_config("configured")) as sb:
        async with (
            _admin(sb) as admin,
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
        ):
            await admin.create_queue("work")
            async with client.get_queue_sender("work") as sender:
                await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(4)])
                await sender.schedule_messages(ServiceBusMessage("later"), later)
            async with client.get_queue_receiver("work") as receiver:
                [first] = await receive_n(receiver, 1)
                await receiver.dead_letter_message(first, reason="bad")

            props = await admin.get_queue_runtime_properties("work")
            assert props.active_message_count == 3
            assert props.dead_letter_message_count == 1
            assert props.scheduled_message_count == 1
            assert props.total_message_count == 5
            assert props.transfer_message_count == 0
            assert (props.size_in_bytes or 0) > 0
            assert props.created_at_utc is not None
            assert props.updated_at_utc is not None
            assert props.accessed_at_utc is not None

            await admin.create_topic("events")
            await admin.create_subscription("events", "all")
            async with client.get_topic_sender("events") as sender:
                await sender.send_messages(ServiceBusMessage("e"))
                await sender.schedule_messages(ServiceBusMessage("later"), later)
            sub = await admin.get_subscription_runtime_properties("events", "all")
            assert (sub.active_message_count, sub.dead_letter_message_count) == (1, 0)
            topic = await admin.get_topic_runtime_properties("events")
            assert (topic.scheduled_message_count, topic.subscription_count) == (1, 1)
            assert (topic.size_in_bytes or 0) > 0


async def test_created_entities_carry_messages() -> None:
    with run_emulator(queue_config("configured")) as sb:
        async with (
            _admin(sb) as admin,
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
        ):
            await admin.create_queue("made", max_delivery_count=1)
            await admin.create_queue("forwarded")
            await admin.create_topic("events")
            await admin.create_subscription("events", "red", forward_to="forwarded")
            await admin.delete_rule("events", "red", "$Default")
            await admin.create_rule(
                "events",
                "red",
                "red",
                filter=SqlRuleFilter("color = 'red'"),
                action=SqlRuleAction("SET tagged = 'yes'"),
            )
            await admin.create_subscription("events", "eu")
            await admin.delete_rule("events", "eu", "$Default")
            await admin.create_rule(
                "events", "eu", "eu", filter=CorrelationRuleFilter(properties={"region": "eu"})
            )

            async with client.get_queue_sender("made") as sender:
                await sender.send_messages(ServiceBusMessage("to the queue"))
            async with client.get_queue_receiver("made") as receiver:
                [message] = await receive_n(receiver, 1)
                assert str(message) == "to the queue"
                await receiver.abandon_message(message)  # MaxDeliveryCount 1: dead-lettered
            async with client.get_queue_receiver("made", sub_queue="deadletter") as dlq:
                [dead] = await receive_n(dlq, 1)
                assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
                await dlq.complete_message(dead)

            async with client.get_topic_sender("events") as sender:
                await sender.send_messages(
                    [
                        ServiceBusMessage("r", application_properties={"color": "red"}),
                        ServiceBusMessage("e", application_properties={"region": "eu"}),
                        ServiceBusMessage("none", application_properties={"color": "blue"}),
                    ]
                )
            async with client.get_queue_receiver("forwarded") as receiver:
                [red] = await receive_n(receiver, 1)
                assert str(red) == "r"
                assert red.application_properties is not None
                assert red.application_properties[b"tagged"] == b"yes"
                await receiver.complete_message(red)
            async with client.get_subscription_receiver("events", "eu") as receiver:
                [eu] = await receive_n(receiver, 1)
                assert str(eu) == "e"
                await receiver.complete_message(eu)
                await receive_none(receiver)


async def test_deleting_a_queue_detaches_its_receivers() -> None:
    with run_emulator(queue_config("configured")) as sb:
        async with (
            _admin(sb) as admin,
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
        ):
            await admin.create_queue("doomed")
            async with client.get_queue_sender("doomed") as sender:
                await sender.send_messages(ServiceBusMessage("x"))
            async with client.get_queue_receiver("doomed") as receiver:
                await receive_n(receiver, 1)
                await admin.delete_queue("doomed")
                with pytest.raises(ServiceBusError):
                    await receiver.receive_messages(max_message_count=1, max_wait_time=2)
            await admin.create_queue("doomed")  # a new, empty queue
            async with client.get_queue_receiver("doomed") as receiver:
                await receive_none(receiver)
            # The configured queue still works on the same port.
            async with client.get_queue_sender("configured") as sender:
                await sender.send_messages(ServiceBusMessage("still here"))
            async with client.get_queue_receiver("configured") as receiver:
                [message] = await receive_n(receiver, 1)
                assert str(message) == "still here"


async def test_created_entities_survive_a_restart(tmp_path: Path) -> None:
    config = queue_config("configured", "removed")
    with run_emulator(config, data_dir=tmp_path) as sb:
        ca_file = sb.ca_file
        async with (
            _admin(sb) as admin,
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
        ):
            await admin.create_queue("made", max_delivery_count=4)
            await admin.create_topic("events")
            await admin.create_subscription("events", "red")
            await admin.create_rule(
                "events", "red", "red", filter=SqlRuleFilter("color = @c", {"@c": "red"})
            )
            await admin.delete_rule("events", "red", "$Default")
            await admin.delete_queue("removed")
            queue = await admin.get_queue("configured")
            queue.max_delivery_count = 9
            await admin.update_queue(queue)
            async with client.get_queue_sender("made") as sender:
                await sender.send_messages(ServiceBusMessage("kept"))

    with run_emulator(config, data_dir=tmp_path) as sb:
        assert sb.ca_file == ca_file  # the certificate is kept too
        async with (
            _admin(sb) as admin,
            ServiceBusClient.from_connection_string(sb.connection_string) as client,
        ):
            assert sorted([q.name async for q in admin.list_queues()]) == ["configured", "made"]
            assert (await admin.get_queue("made")).max_delivery_count == 4
            assert (await admin.get_queue("configured")).max_delivery_count == 9
            [rule] = [r async for r in admin.list_rules("events", "red")]
            assert isinstance(rule.filter, SqlRuleFilter)
            assert dict(rule.filter.parameters or {}) == {"@c": "red"}
            async with client.get_queue_receiver("made") as receiver:
                [message] = await receive_n(receiver, 1)
                assert str(message) == "kept"
                await receiver.complete_message(message)
            async with client.get_topic_sender("events") as sender:
                await sender.send_messages(
                    [
                        ServiceBusMessage("r", application_properties={"color": "red"}),
                        ServiceBusMessage("b", application_properties={"color": "blue"}),
                    ]
                )

            async def red_count() -> int:
                props = await admin.get_subscription_runtime_properties("events", "red")
                return props.active_message_count or 0

            assert await eventually(red_count) == 1
