"""The administration API through the real ``ServiceBusAdministrationClient`` (HTTPS on the
AMQP port): create, get, update, list and delete queues, topics, subscriptions and rules,
and Azure's errors."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.management import (
    CorrelationRuleFilter,
    FalseRuleFilter,
    SqlRuleAction,
    SqlRuleFilter,
    TrueRuleFilter,
)

from emulator.testing import EmulatorHandle, queue_config, run_emulator


@pytest.fixture
def sb() -> Iterator[EmulatorHandle]:
    with run_emulator(queue_config("configured", LockDuration="PT5S")) as handle:
        yield handle


@pytest.fixture
async def admin(sb: EmulatorHandle) -> AsyncIterator[ServiceBusAdministrationClient]:
    async with ServiceBusAdministrationClient.from_connection_string(
        sb.connection_string, connection_verify=sb.ca_file
    ) as client:
        yield client


async def test_queue_crud(admin: ServiceBusAdministrationClient) -> None:
    created = await admin.create_queue(
        "orders",
        lock_duration=datetime.timedelta(seconds=30),
        max_delivery_count=3,
        requires_session=True,
        dead_lettering_on_message_expiration=True,
        default_message_time_to_live=datetime.timedelta(hours=1),
    )
    assert created.name == "orders"
    assert created.lock_duration == datetime.timedelta(seconds=30)
    assert created.max_delivery_count == 3
    assert created.requires_session is True
    assert created.dead_lettering_on_message_expiration is True
    assert created.default_message_time_to_live == datetime.timedelta(hours=1)

    queue = await admin.get_queue("orders")
    queue.max_delivery_count = 7
    queue.lock_duration = datetime.timedelta(seconds=45)
    await admin.update_queue(queue)
    updated = await admin.get_queue("ORDERS")  # names are case-insensitive
    assert (updated.max_delivery_count, updated.lock_duration) == (
        7,
        datetime.timedelta(seconds=45),
    )
    assert updated.requires_session is True

    configured = await admin.get_queue("configured")
    assert configured.lock_duration == datetime.timedelta(seconds=5)
    assert configured.max_delivery_count == 10

    assert sorted([q.name async for q in admin.list_queues()]) == ["configured", "orders"]
    await admin.delete_queue("orders")
    assert [q.name async for q in admin.list_queues()] == ["configured"]
    with pytest.raises(ResourceNotFoundError):
        await admin.get_queue("orders")


async def test_list_pages_through_skip_and_top(sb: EmulatorHandle) -> None:
    async with ServiceBusAdministrationClient.from_connection_string(
        sb.connection_string, connection_verify=sb.ca_file
    ) as admin:
        for index in range(7):
            await admin.create_queue(f"page-{index}")
        pages = admin.list_queues().by_page()
        sizes = []
        names = []
        async for page in pages:
            items = [q.name async for q in page]
            sizes.append(len(items))
            names += items
    assert sorted(names) == sorted(["configured", *(f"page-{i}" for i in range(7))])
    # The client asks for 100 at a time; one page holds all eight.
    assert sizes == [8]


async def test_topic_and_subscription_crud(admin: ServiceBusAdministrationClient) -> None:
    topic = await admin.create_topic(
        "events",
        requires_duplicate_detection=True,
        duplicate_detection_history_time_window=datetime.timedelta(minutes=2),
        max_message_size_in_kilobytes=512,
    )
    assert topic.requires_duplicate_detection is True
    assert topic.duplicate_detection_history_time_window == datetime.timedelta(minutes=2)
    topic.default_message_time_to_live = datetime.timedelta(days=1)
    await admin.update_topic(topic)
    assert (await admin.get_topic("events")).default_message_time_to_live == datetime.timedelta(
        days=1
    )
    assert [t.name async for t in admin.list_topics()] == ["events"]

    sub = await admin.create_subscription(
        "events", "audit", max_delivery_count=2, forward_dead_lettered_messages_to="configured"
    )
    assert sub.max_delivery_count == 2
    assert sub.forward_dead_lettered_messages_to is not None
    assert sub.forward_dead_lettered_messages_to.endswith("/configured")
    sub.lock_duration = datetime.timedelta(seconds=20)
    sub.dead_lettering_on_filter_evaluation_exceptions = False
    await admin.update_subscription("events", sub)
    got = await admin.get_subscription("events", "audit")
    assert got.lock_duration == datetime.timedelta(seconds=20)
    assert got.dead_lettering_on_filter_evaluation_exceptions is False
    await admin.create_subscription("events", "siem")
    assert [s.name async for s in admin.list_subscriptions("events")] == ["audit", "siem"]
    assert (await admin.get_topic_runtime_properties("events")).subscription_count == 2

    await admin.delete_subscription("events", "siem")
    assert [s.name async for s in admin.list_subscriptions("events")] == ["audit"]
    await admin.delete_topic("events")
    assert [t.name async for t in admin.list_topics()] == []
    with pytest.raises(ResourceNotFoundError):
        await admin.get_subscription("events", "audit")


async def test_rule_crud(admin: ServiceBusAdministrationClient) -> None:
    await admin.create_topic("events")
    await admin.create_subscription("events", "s")
    [default] = [r async for r in admin.list_rules("events", "s")]
    assert default.name == "$Default"
    assert isinstance(default.filter, TrueRuleFilter)

    sql = await admin.create_rule(
        "events",
        "s",
        "sql",
        filter=SqlRuleFilter("color = @color AND size > @size", {"@color": "red", "@size": 2}),
        action=SqlRuleAction("SET seen = @yes", {"@yes": True}),
    )
    assert isinstance(sql.filter, SqlRuleFilter)
    assert sql.filter.sql_expression == "color = @color AND size > @size"
    assert dict(sql.filter.parameters or {}) == {"@color": "red", "@size": 2}
    assert isinstance(sql.action, SqlRuleAction)
    assert sql.action.sql_expression == "SET seen = @yes"
    assert sql.created_at_utc is not None

    correlation = await admin.create_rule(
        "events",
        "s",
        "corr",
        filter=CorrelationRuleFilter(
            correlation_id="c-1", label="order", properties={"region": "eu", "tier": 3}
        ),
    )
    assert isinstance(correlation.filter, CorrelationRuleFilter)
    assert correlation.filter.correlation_id == "c-1"
    assert correlation.filter.label == "order"
    assert dict(correlation.filter.properties or {}) == {"region": "eu", "tier": 3}
    assert correlation.action is None

    rule = await admin.get_rule("events", "s", "corr")
    rule.filter = FalseRuleFilter()
    await admin.update_rule("events", "s", rule)
    assert isinstance((await admin.get_rule("events", "s", "corr")).filter, FalseRuleFilter)

    names = [r.name async for r in admin.list_rules("events", "s")]
    assert names == ["$Default", "sql", "corr"]
    await admin.delete_rule("events", "s", "$Default")
    assert [r.name async for r in admin.list_rules("events", "s")] == ["sql", "corr"]
    with pytest.raises(ResourceNotFoundError):
        await admin.get_rule("events", "s", "$Default")


async def test_errors_as_azure(sb: EmulatorHandle, admin: ServiceBusAdministrationClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        await admin.get_queue("missing")
    with pytest.raises(ResourceNotFoundError):
        await admin.delete_topic("missing")
    with pytest.raises(ResourceNotFoundError):
        await admin.create_subscription("missing", "s")
    with pytest.raises(ResourceExistsError):
        await admin.create_queue("configured")
    await admin.create_topic("events")
    with pytest.raises(ResourceExistsError):
        await admin.create_queue("EVENTS")  # queues and topics share names
    await admin.create_subscription("events", "s")
    with pytest.raises(ResourceExistsError):
        await admin.create_subscription("events", "s")
    with pytest.raises(ResourceExistsError):
        await admin.create_rule("events", "s", "$Default")
    with pytest.raises(HttpResponseError) as bad_filter:
        await admin.create_rule("events", "s", "bad", filter=SqlRuleFilter("color = = 'red'"))
    assert bad_filter.value.status_code == 400
    assert "SqlFilter \"color = = 'red'\"" in str(bad_filter.value)
    assert "position" in str(bad_filter.value)
    with pytest.raises(HttpResponseError) as bad_target:
        await admin.create_queue("fwd", forward_to="nowhere")
    assert bad_target.value.status_code == 400
    queue = await admin.get_queue("configured")
    queue.requires_session = True
    with pytest.raises(HttpResponseError) as immutable:
        await admin.update_queue(queue)
    assert immutable.value.status_code == 400

    wrong_key = sb.connection_string.replace("SAS_KEY_VALUE", "wrong")
    async with ServiceBusAdministrationClient.from_connection_string(
        wrong_key, connection_verify=sb.ca_file
    ) as intruder:
        with pytest.raises(ClientAuthenticationError):
            await intruder.get_queue("configured")


async def test_namespace_properties(admin: ServiceBusAdministrationClient) -> None:
    properties = await admin.get_namespace_properties()
    assert properties.name == "sbemulatorns"
    assert properties.messaging_sku == "Standard"
