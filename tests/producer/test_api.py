"""The v1 API against the emulator: accepted events are committed, then published."""

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts import AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE
from producer import ProducerSettings, create_app
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.producer.conftest import AUDIT, NOTIFICATION, Caller, receive, wait_until

PROBLEM = "application/problem+json"


@pytest.fixture
def client(
    connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> Iterator[TestClient]:
    """A producer on a fresh emulator (tests that read the queues)."""
    with TestClient(create_app(make_settings(connection_string))) as test_client:
        yield test_client


@pytest.fixture
def shared_client(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> Iterator[TestClient]:
    """A producer on the module's emulator (tests that never read the queues)."""
    settings = make_settings(shared_connection_string, max_request_bytes=64_000)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_audit_event_is_committed_then_published(
    client: TestClient, connection_string: str, caller: Caller
) -> None:
    response = client.post(
        "/v1/audit-events", json=AUDIT, headers={**caller.headers, "X-Correlation-ID": "req-123"}
    )

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["type"] == AUDIT_EVENT_TYPE
    assert accepted["queue"] == AUDIT_QUEUE
    assert response.headers["location"] == f"/v1/events/{accepted['id']}"
    [message] = receive(connection_string, AUDIT_QUEUE, 1)
    assert message.message_id == accepted["id"]
    assert message.correlation_id == "req-123"
    body = json.loads(b"".join(message.body))
    assert body["source"] == caller.source
    assert body["subject"] == "invoice/INV-1042"
    assert body["data"]["actor"]["display_name"] == "Grace Hopper"
    assert wait_until(
        lambda: (
            client.get(accepted["links"]["status"], headers=caller.headers).json()["status"]
            == "published"
        )
    )
    status = client.get(f"/v1/events/{accepted['id']}", headers=caller.headers).json()
    assert status["source"] == caller.source
    assert status["published_at"] is not None
    assert status["accepted_at"] <= status["published_at"]
    stats = client.get("/v1/stats", headers=caller.headers).json()
    assert stats["accepted"] == 1
    assert stats["published"] == 1
    assert stats["publish_failed"] == 0


def test_notifications_and_batches_reach_their_queue(
    client: TestClient, connection_string: str, caller: Caller
) -> None:
    single = [
        client.post("/v1/notifications", json=NOTIFICATION, headers=caller.headers).json()["id"]
        for _ in range(3)
    ]
    batch = client.post(
        "/v1/notifications:batch",
        json={"events": [NOTIFICATION, {**NOTIFICATION, "priority": "low"}]},
        headers=caller.headers,
    )
    audit_batch = client.post(
        "/v1/audit-events:batch", json={"events": [AUDIT] * 4}, headers=caller.headers
    )

    assert batch.status_code == 202
    assert audit_batch.status_code == 202
    batch_ids = [e["id"] for e in batch.json()["events"]]
    audit_ids = [e["id"] for e in audit_batch.json()["events"]]
    notifications = receive(connection_string, NOTIFICATIONS_QUEUE, 5)
    audits = receive(connection_string, AUDIT_QUEUE, 4)
    assert sorted(str(m.message_id) for m in notifications) == sorted(single + batch_ids)
    assert sorted(str(m.message_id) for m in audits) == sorted(audit_ids)
    for message in notifications:
        assert message.application_properties is not None
        assert message.application_properties[b"eventType"] == NOTIFICATION_EVENT_TYPE.encode()


def test_a_batch_is_all_or_nothing(shared_client: TestClient, caller: Caller) -> None:
    events = [AUDIT, AUDIT, {**AUDIT, "action": "Approve Invoice"}, AUDIT]

    response = shared_client.post(
        "/v1/audit-events:batch", json={"events": events}, headers=caller.headers
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "events", 2, "action"]
    assert error["pointer"] == "#/events/2/action"
    assert shared_client.get("/v1/stats", headers=caller.headers).json()["accepted"] == 0


@pytest.mark.parametrize("count", [0, 101])
def test_batch_size_is_limited(shared_client: TestClient, caller: Caller, count: int) -> None:
    response = shared_client.post(
        "/v1/audit-events:batch", json={"events": [AUDIT] * count}, headers=caller.headers
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "events"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/audit-events", {**AUDIT, "actor": None}, "actor"),
        ("/v1/audit-events", {**AUDIT, "source_ip": "300.1.1.1"}, "source_ip"),
        ("/v1/audit-events", {**AUDIT, "occurred_at": "2026-11-21T09:30:00"}, "occurred_at"),
        ("/v1/audit-events", {**AUDIT, "action": "Approve Invoice"}, "action"),
        ("/v1/audit-events", {**AUDIT, "unexpected": 1}, "unexpected"),
        ("/v1/notifications", {**NOTIFICATION, "priority": "urgent"}, "priority"),
        ("/v1/notifications", {**NOTIFICATION, "recipient": "nobody"}, "recipient"),
        (
            "/v1/notifications",
            {**NOTIFICATION, "deliver_at": "2020-01-01T00:00:00Z"},
            "deliver_at",
        ),
    ],
)
def test_invalid_bodies_get_a_422_problem_naming_the_field(
    shared_client: TestClient, caller: Caller, path: str, body: dict[str, Any], field: str
) -> None:
    response = shared_client.post(path, json=body, headers=caller.headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["status"] == 422
    assert field in problem["detail"] or any(field in str(e) for e in problem["errors"])
    assert any(field in e["loc"] or field in e["msg"] for e in problem["errors"]), problem
    assert shared_client.get("/v1/stats", headers=caller.headers).json()["accepted"] == 0


def test_malformed_json_is_422(shared_client: TestClient, caller: Caller) -> None:
    response = shared_client.post(
        "/v1/audit-events",
        content=b'{"actor": ',
        headers={**caller.headers, "content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_large_bodies_get_413(shared_client: TestClient, caller: Caller) -> None:
    big = {**AUDIT, "details": {"blob": "x" * 70_000}}
    declared = shared_client.post("/v1/audit-events", json=big, headers=caller.headers)

    def chunks() -> Iterator[bytes]:
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    chunked = shared_client.post(
        "/v1/audit-events",
        content=chunks(),
        headers={**caller.headers, "content-type": "application/json"},
    )

    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "/problems/content-too-large"
    assert shared_client.get("/v1/stats", headers=caller.headers).json()["accepted"] == 0


def test_an_event_too_large_for_service_bus_gets_413(
    shared_connection_string: str,
    make_settings: Callable[..., ProducerSettings],
    caller: Caller,
) -> None:
    settings = make_settings(shared_connection_string, max_message_bytes=4096)
    notification = {**NOTIFICATION, "template": None, "parameters": {}, "body": "x" * 5000}
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/notifications", json=notification, headers=caller.headers)

        assert response.status_code == 413
        assert response.json()["type"] == "/problems/event-too-large"
        assert client.get("/v1/stats", headers=caller.headers).json()["accepted"] == 0


def test_idempotency_key_replays_or_conflicts(
    client: TestClient, connection_string: str, caller: Caller, other_caller: Caller
) -> None:
    headers = {**caller.headers, "Idempotency-Key": "approve-INV-1042"}
    first = client.post("/v1/audit-events", json=AUDIT, headers=headers)
    # Same body, different formatting: still the same request.
    again = client.post(
        "/v1/audit-events",
        content=json.dumps(AUDIT, indent=2).encode(),
        headers={**headers, "content-type": "application/json"},
    )
    different = client.post(
        "/v1/audit-events", json={**AUDIT, "outcome": "failure"}, headers=headers
    )
    other_route = client.post("/v1/audit-events:batch", json={"events": [AUDIT]}, headers=headers)
    other_callers_key = client.post(
        "/v1/audit-events",
        json=AUDIT,
        headers={**other_caller.headers, "Idempotency-Key": "approve-INV-1042"},
    )

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert different.status_code == 409
    assert different.json()["type"] == "/problems/idempotency-conflict"
    assert other_route.status_code == 409
    assert other_callers_key.status_code == 202
    assert other_callers_key.json()["id"] != first.json()["id"]
    messages = receive(connection_string, AUDIT_QUEUE, 3, timeout=2)
    assert sorted(str(m.message_id) for m in messages) == sorted(
        [first.json()["id"], other_callers_key.json()["id"]]
    )


def test_invalid_idempotency_key_is_422(shared_client: TestClient, caller: Caller) -> None:
    response = shared_client.post(
        "/v1/audit-events", json=AUDIT, headers={**caller.headers, "Idempotency-Key": "a\tb"}
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


def test_event_status_is_visible_to_its_caller_only(
    shared_client: TestClient, caller: Caller, other_caller: Caller
) -> None:
    event_id = shared_client.post("/v1/audit-events", json=AUDIT, headers=caller.headers).json()[
        "id"
    ]

    mine = shared_client.get(f"/v1/events/{event_id}", headers=caller.headers)
    theirs = shared_client.get(f"/v1/events/{event_id}", headers=other_caller.headers)
    unknown = shared_client.get("/v1/events/no-such-event", headers=caller.headers)

    assert mine.status_code == 200
    assert mine.json()["status"] in {"accepted", "published"}
    assert theirs.status_code == unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    assert unknown.json()["title"] == "Not Found"


def test_probes_need_no_credential(shared_client: TestClient) -> None:
    assert shared_client.get("/healthz").json() == {"status": "ok"}
    ready = shared_client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["outbox"]["backlog"] == 0


def test_openapi_documents_routes_security_and_problems(shared_client: TestClient) -> None:
    spec = shared_client.get("/openapi.json").json()

    assert {
        "/v1/audit-events",
        "/v1/audit-events:batch",
        "/v1/notifications",
        "/v1/notifications:batch",
        "/v1/events/{event_id}",
        "/v1/notifications/{event_id}",
    } <= set(spec["paths"])
    assert set(spec["components"]["securitySchemes"]) == {"ApiKey", "EntraID"}
    post = spec["paths"]["/v1/audit-events"]["post"]
    assert {"ApiKey": []} in post["security"]
    assert "application/problem+json" in post["responses"]["409"]["content"]
    params = {p["name"] for p in post["parameters"]}
    assert {"Idempotency-Key", "X-Correlation-ID"} <= params
    problem_type = shared_client.get("/problems/idempotency-conflict")
    assert problem_type.json()["title"].startswith("Idempotency-Key")
