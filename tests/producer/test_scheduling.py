"""Notifications with ``deliver_at`` become scheduled messages that can be cancelled."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from producer import ProducerSettings, create_app
from tests.conftest import NOTIFICATIONS_QUEUE
from tests.producer.conftest import AUDIT, NOTIFICATION, Caller, peek_all, receive, wait_until


@pytest.fixture
def client(
    connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(connection_string))) as test_client:
        yield test_client


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def status_of(client: TestClient, caller: Caller, event_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/events/{event_id}", headers=caller.headers).json()
    return body


def test_a_scheduled_notification_can_be_cancelled(
    client: TestClient, connection_string: str, caller: Caller
) -> None:
    deliver_at = at(3600)
    accepted = client.post(
        "/v1/notifications", json={**NOTIFICATION, "deliver_at": deliver_at}, headers=caller.headers
    ).json()
    event_id = accepted["id"]
    assert accepted["deliver_at"] is not None

    assert wait_until(lambda: status_of(client, caller, event_id)["status"] == "scheduled")
    scheduled = status_of(client, caller, event_id)
    assert isinstance(scheduled["sequence_number"], int)
    assert datetime.fromisoformat(scheduled["scheduled_enqueue_time"]) == datetime.fromisoformat(
        deliver_at
    )
    [peeked] = peek_all(connection_string, NOTIFICATIONS_QUEUE)
    assert peeked.message_id == event_id
    assert peeked.sequence_number == scheduled["sequence_number"]

    cancelled = client.delete(f"/v1/notifications/{event_id}", headers=caller.headers)
    again = client.delete(f"/v1/notifications/{event_id}", headers=caller.headers)

    assert cancelled.status_code == again.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancelled_at"] is not None
    after = status_of(client, caller, event_id)
    # Nothing will be delivered: no enqueue time is shown as pending; the request keeps it.
    assert after["scheduled_enqueue_time"] is None
    assert after["scheduled_at"] is None
    assert datetime.fromisoformat(after["deliver_at"]) == datetime.fromisoformat(deliver_at)
    assert peek_all(connection_string, NOTIFICATIONS_QUEUE) == []
    assert client.get("/v1/stats", headers=caller.headers).json()["cancelled"] == 1


def test_a_delivered_notification_cannot_be_cancelled(
    client: TestClient, connection_string: str, caller: Caller
) -> None:
    soon = client.post(
        "/v1/notifications", json={**NOTIFICATION, "deliver_at": at(2)}, headers=caller.headers
    ).json()["id"]
    now = client.post("/v1/notifications", json=NOTIFICATION, headers=caller.headers).json()["id"]

    messages = receive(connection_string, NOTIFICATIONS_QUEUE, 2, timeout=30)

    assert sorted(str(m.message_id) for m in messages) == sorted([soon, now])
    for event_id in (soon, now):

        def published(event_id: str = event_id) -> bool:
            return bool(status_of(client, caller, event_id)["status"] == "published")

        assert wait_until(published)
        response = client.delete(f"/v1/notifications/{event_id}", headers=caller.headers)
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/not-cancellable"
        assert response.json()["event_status"] == "published"
        assert "published" in response.json()["detail"]
    assert status_of(client, caller, soon)["sequence_number"] is not None


def test_only_the_callers_own_notifications_can_be_cancelled(
    client: TestClient, caller: Caller, other_caller: Caller
) -> None:
    notification = client.post(
        "/v1/notifications", json={**NOTIFICATION, "deliver_at": at(3600)}, headers=caller.headers
    ).json()["id"]
    audit = client.post("/v1/audit-events", json=AUDIT, headers=caller.headers).json()["id"]

    assert (
        client.delete(f"/v1/notifications/{notification}", headers=other_caller.headers).status_code
        == 404
    )
    assert client.delete(f"/v1/notifications/{audit}", headers=caller.headers).status_code == 404
    assert client.delete("/v1/notifications/unknown", headers=caller.headers).status_code == 404
