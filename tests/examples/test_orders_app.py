"""The example app: an order and its audit event commit (or roll back) together."""

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from examples.orders_app import create_orders_app
from producer import ProducerSettings
from producer.outbox.models import outbox
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.producer.conftest import receive

ORDER = {"order_id": "ORD-1", "customer_id": "c-7", "amount_cents": 4200}


@pytest.fixture
def client(connection_string: str, database_url: str) -> Iterator[TestClient]:
    settings = ProducerSettings(
        servicebus_connection_string=connection_string,
        database_url=database_url,
        shutdown_grace=2,
    )
    with TestClient(create_orders_app(settings)) as test_client:
        yield test_client


def outbox_rows(client: TestClient) -> int:
    publisher = client.app.state.event_publisher  # type: ignore[attr-defined]

    async def count() -> int:
        async with publisher.repository.engine.connect() as connection:
            rows: int = (
                await connection.execute(select(func.count()).select_from(outbox))
            ).scalar_one()
            return rows

    result: int = client.portal.call(count)  # type: ignore[union-attr]
    return result


def test_order_and_audit_event_commit_together(client: TestClient, connection_string: str) -> None:
    created = client.post("/orders", json=ORDER)
    duplicate = client.post("/orders", json={**ORDER, "amount_cents": 1})

    assert created.status_code == 201
    assert duplicate.status_code == 409
    assert outbox_rows(client) == 1  # the duplicate's event was rolled back with its order
    assert client.app.state.event_publisher.stats.accepted == 1  # type: ignore[attr-defined]
    messages = receive(connection_string, AUDIT_QUEUE, 2, timeout=2)
    assert [str(m.message_id) for m in messages] == [created.json()["audit_event_id"]]
    body = json.loads(b"".join(messages[0].body))
    assert body["source"] == "/examples/orders"
    assert body["data"]["resource"] == {"type": "order", "id": "ORD-1"}
    assert body["data"]["details"] == {"amount_cents": 4200}


def test_a_reminder_is_published_after_the_response(
    client: TestClient, connection_string: str
) -> None:
    accepted = client.post("/orders/ORD-9/reminders", json={"email": "c7@example.com"})

    assert accepted.status_code == 202
    [message] = receive(connection_string, NOTIFICATIONS_QUEUE, 1)
    assert message.message_id == accepted.json()["notification_id"]
