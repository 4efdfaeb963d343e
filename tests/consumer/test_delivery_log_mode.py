"""``CONSUMER_DELIVERY_MODE=log`` renders and validates exactly as ``live``; only the
transport differs (issue 21, item 3)."""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.servicebus.aio import ServiceBusClient

from consumer.errors import PermanentError
from consumer.handlers.templates import Templates
from consumer.runner import Stores, build_router, open_stores
from consumer.settings import ConsumerSettings
from contracts.servicebus import to_servicebus_message
from tests.conftest import NOTIFICATIONS_QUEUE
from tests.consumer.conftest import (
    StartWorker,
    dead_letters,
    eventually,
    notification_envelope,
    send,
)
from tools.workload import MISSING_TEMPLATE, TEMPLATES, Workload


@pytest.fixture
def log_settings(tmp_path: Path, connection_string: str) -> ConsumerSettings:
    return ConsumerSettings(
        servicebus_connection_string=connection_string,
        audit_store_url=f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}",
        delivery_log_path=tmp_path / "notifications.jsonl",
        delivery_mode="log",
    )


@pytest.fixture
async def stores(log_settings: ConsumerSettings) -> AsyncIterator[Stores]:
    async with open_stores(log_settings) as opened:
        yield opened


def logged(path: Path) -> dict[str, dict[str, object]]:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return {entry["event_id"]: entry for entry in map(json.loads, lines)}


async def test_log_mode_dead_letters_what_live_mode_would(
    sb: ServiceBusClient,
    log_settings: ConsumerSettings,
    stores: Stores,
    start_worker: StartWorker,
) -> None:
    running = start_worker(build_router(log_settings, stores, None))
    rendered = notification_envelope(
        "email",
        "ada@example.com",
        template="weekly-digest",
        parameters={"name": "Ada", "count": 2},
    )
    missing = notification_envelope("email", "ada@example.com", template="no-such-template")
    unrenderable = notification_envelope(
        "email", "ada@example.com", template="invoice-approved"
    )  # needs the parameter "invoice"
    plain_http = notification_envelope("webhook", "http://hooks.example.com/x")
    private = notification_envelope("webhook", "https://10.1.2.3/hook")
    webhook = notification_envelope("webhook", "https://hooks.example.com/tenants/1")
    envelopes = [rendered, missing, unrenderable, plain_http, private, webhook]
    await send(sb, NOTIFICATIONS_QUEUE, *(to_servicebus_message(e) for e in envelopes))

    dead = await dead_letters(sb, NOTIFICATIONS_QUEUE, 4)

    reasons = {message.message_id: message.dead_letter_reason for message in dead}
    assert reasons == {
        missing.id: "TemplateNotFound",
        unrenderable.id: "TemplateRenderFailed",
        plain_http.id: "WebhookUrlForbidden",
        private.id: "WebhookUrlForbidden",
    }

    async def both_delivered() -> bool:
        return running.stats(NOTIFICATIONS_QUEUE).completed == 2

    await eventually(both_delivered)
    for event in (missing, unrenderable, plain_http, private):
        record = await stores.deliveries.get(event.id)
        assert record is not None
        assert record.status == "rejected"
    await running.shutdown()
    assert log_settings.delivery_log_path is not None
    lines = logged(log_settings.delivery_log_path)
    assert set(lines) == {rendered.id, webhook.id}
    assert lines[rendered.id]["template"] == "weekly-digest"
    assert lines[webhook.id]["template"] is None


def test_make_run_workload_uses_templates_that_render_and_one_that_is_missing() -> None:
    templates = Templates()
    requests = Workload(7).requests(1200)
    notes = [(json.loads(r.body), r.dead_letter) for r in requests if r.kind == "notification"]
    used = {note["template"] for note, expected in notes if "template" in note and not expected}
    assert used == set(TEMPLATES)
    for note, expected in notes:
        if "template" not in note or note["channel"] != "email":
            continue
        if expected is None:
            assert templates.render(
                note["template"], note["parameters"], subject=note["subject"]
            ).text
            continue
        assert note["template"] == MISSING_TEMPLATE
        assert expected == "TemplateNotFound"
        with pytest.raises(PermanentError) as missing:
            templates.render(note["template"], note["parameters"], subject=note["subject"])
        assert missing.value.reason == expected
    assert sum(1 for _, expected in notes if expected) > 0
