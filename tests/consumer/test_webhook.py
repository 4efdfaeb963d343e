"""Webhooks delivered to a real HTTP receiver on loopback, with verifiable signatures."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import standardwebhooks
from azure.servicebus.aio import ServiceBusClient

from consumer.errors import PermanentError, TransientError
from consumer.handlers.delivery import NotificationHandler
from consumer.handlers.webhook import WebhookSender
from consumer.runtime.routing import Route
from consumer.signing import WebhookVerificationError, signed_headers, verify_signature
from consumer.stores.database import Database
from consumer.stores.deliveries import DeliveryStore
from contracts import NOTIFICATION_EVENT_TYPE
from contracts.servicebus import to_servicebus_message
from tests.conftest import NOTIFICATIONS_QUEUE
from tests.consumer.conftest import (
    StartWorker,
    WebhookReceiver,
    dead_letters,
    eventually,
    notification_envelope,
    send,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def local_sender(http: httpx.AsyncClient) -> WebhookSender:
    return WebhookSender(http, SECRET, allow_http=True, allow_private_networks=True)


async def test_webhook_arrives_signed_and_verifies(
    http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    envelope = notification_envelope("webhook", f"{webhook_receiver.base_url}/hooks/a")

    await local_sender(http)(envelope)

    [(headers, body)] = webhook_receiver.received("/hooks/a")
    assert verify_signature(body, headers, SECRET) == envelope.id
    payload = json.loads(body)
    assert payload["id"] == envelope.id
    assert payload["data"]["subject"] == "Hello"
    with pytest.raises(WebhookVerificationError):
        verify_signature(body + b" ", headers, SECRET)  # body altered
    with pytest.raises(WebhookVerificationError):
        verify_signature(body, headers, "whsec_" + "A" * 32)  # wrong secret
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_signature(body, headers, SECRET, now=int(headers["webhook-timestamp"]) + 600)


def test_verify_accepts_any_rotated_secret() -> None:
    headers = signed_headers("evt-1", b"{}", "new-secret", timestamp=1_700_000_000)
    assert verify_signature(b"{}", headers, ["old", "new-secret"], now=1_700_000_010) == "evt-1"
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_signature(b"{}", {}, "new-secret")


async def test_the_standardwebhooks_library_verifies_what_we_send(
    http: httpx.AsyncClient, webhook_receiver: WebhookReceiver
) -> None:
    envelope = notification_envelope("webhook", f"{webhook_receiver.base_url}/hooks/lib")

    await local_sender(http)(envelope)

    [(headers, body)] = webhook_receiver.received("/hooks/lib")
    assert standardwebhooks.Webhook(SECRET).verify(body, headers)["id"] == envelope.id
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body + b" ", headers)


def test_plain_string_secrets_are_utf8_keys_for_the_library() -> None:
    headers = signed_headers("evt-2", b"{}", "plain-secret")
    verified = standardwebhooks.Webhook(b"plain-secret").verify(b"{}", headers, json_parse=False)
    assert verified is None  # verified; nothing parsed
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify_signature(b"{}", headers, "other-secret")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, TransientError),
        (503, TransientError),
        (429, TransientError),
        (408, TransientError),
        (404, PermanentError),
        (400, PermanentError),
        (301, PermanentError),
    ],
)
async def test_http_status_classification(
    http: httpx.AsyncClient, webhook_receiver: WebhookReceiver, status: int, expected: type
) -> None:
    webhook_receiver.status_by_path["/x"] = [status]
    with pytest.raises(expected) as raised:
        await local_sender(http)(notification_envelope("webhook", f"{webhook_receiver.base_url}/x"))
    if isinstance(raised.value, PermanentError):
        assert raised.value.reason == "RecipientRejected"


async def test_unsafe_targets_are_refused(http: httpx.AsyncClient) -> None:
    strict = WebhookSender(http, SECRET)
    with pytest.raises(PermanentError) as plain:
        await strict(notification_envelope("webhook", "http://hooks.example.com/x"))
    assert plain.value.reason == "WebhookUrlForbidden"
    with pytest.raises(PermanentError, match="non-public"):
        await strict(notification_envelope("webhook", "https://127.0.0.1:9/x"))


async def test_webhooks_through_the_worker(
    sb: ServiceBusClient,
    db: Database,
    http: httpx.AsyncClient,
    webhook_receiver: WebhookReceiver,
    start_worker: StartWorker,
) -> None:
    from consumer.retry import RetryPolicy

    webhook_receiver.status_by_path["/flaky"] = [503, 200]
    webhook_receiver.status_by_path["/gone"] = [410]
    deliveries = DeliveryStore(db)
    handler = NotificationHandler("webhook", local_sender(http), deliveries)
    policy = RetryPolicy(immediate_attempts=1, immediate_initial_delay=0.01, delayed_attempts=1)
    running = start_worker({NOTIFICATION_EVENT_TYPE: Route("webhook", handler, policy)})
    ok = notification_envelope("webhook", f"{webhook_receiver.base_url}/ok")
    flaky = notification_envelope("webhook", f"{webhook_receiver.base_url}/flaky")
    gone = notification_envelope("webhook", f"{webhook_receiver.base_url}/gone")
    await send(sb, NOTIFICATIONS_QUEUE, *(to_servicebus_message(e) for e in (ok, flaky, gone)))

    async def settled() -> bool:
        stats = running.stats(NOTIFICATIONS_QUEUE)
        return stats.completed == 2 and sum(stats.dead_lettered.values()) == 1

    await eventually(settled)
    assert len(webhook_receiver.received("/ok")) == 1
    flaky_calls = webhook_receiver.received("/flaky")
    assert len(flaky_calls) == 2  # 503, then the immediate retry got 200
    assert {h["webhook-id"] for h, _ in flaky_calls} == {flaky.id}  # stable id across retries
    assert (await deliveries.get(flaky.id)).attempts == 2  # type: ignore[union-attr]
    [dead] = await dead_letters(sb, NOTIFICATIONS_QUEUE, 1)
    assert dead.message_id == gone.id
    assert dead.dead_letter_reason == "RecipientRejected"
    assert "410" in (dead.dead_letter_error_description or "")
