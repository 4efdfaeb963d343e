"""One trace from HTTP request through the outbox and Service Bus to the handler, with the
store spans the README's Observability table promises."""

import asyncio
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from consumer.runner import run_consumer
from consumer.settings import ConsumerSettings
from emulator.testing import run_emulator
from producer import ProducerSettings, create_app
from producer.apikeys import new_api_key
from tests.conftest import queues_config
from tests.telemetry_support import azure_sdk_tracing, in_memory_telemetry, library_instrumentation

AUDIT = {
    "actor": {"id": "u-7", "display_name": "Barbara Liskov"},
    "action": "role.grant",
    "resource": {"type": "role", "id": "admin"},
    "outcome": "success",
    "occurred_at": "2026-11-21T12:00:00Z",
}


async def test_http_outbox_publish_and_process_spans_form_one_trace(tmp_path: Path) -> None:
    collected = in_memory_telemetry()
    key, entry = new_api_key("tracing")
    with azure_sdk_tracing(), library_instrumentation(), run_emulator(queues_config()) as emulator:
        producer_settings = ProducerSettings(
            servicebus_connection_string=emulator.connection_string,
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
            api_keys=str(entry),
        )
        consumer_settings = ConsumerSettings(
            servicebus_connection_string=emulator.connection_string,
            audit_store_url=f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}",
            delivery_log_path="",
            health_port=0,
            max_wait_time=0.5,
            audit_max_delivery_count=3,
            notifications_max_delivery_count=3,
        )
        stop = asyncio.Event()
        app = create_app(producer_settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://producer"
            ) as client,
        ):
            # Started after the producer's lifespan: Alembic's migration context is
            # process-global, so two components must not migrate concurrently in one loop.
            consumer = asyncio.create_task(run_consumer(consumer_settings, stop))
            response = await client.post("/v1/audit-events", json=AUDIT, headers={"X-API-Key": key})
            assert response.status_code == 202
            event_id = response.json()["id"]

            def processed() -> list[object]:
                return [
                    s
                    for s in collected.finished("process audit")
                    if s.attributes and s.attributes.get("messaging.message.id") == event_id
                ]

            deadline = asyncio.get_running_loop().time() + 30
            while not processed():
                assert asyncio.get_running_loop().time() < deadline, "event never processed"
                await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(consumer, 40)

    spans = collected.spans.get_finished_spans()
    [process] = [
        s
        for s in spans
        if s.name == "process audit"
        and (s.attributes or {}).get("messaging.message.id") == event_id
    ]
    trace_id = process.context.trace_id
    in_trace = {s.name: s for s in spans if s.context.trace_id == trace_id}
    [server] = [s for s in in_trace.values() if s.kind is SpanKind.SERVER]
    create = in_trace["create audit"]
    assert server.name == "POST /v1/audit-events"
    assert create.kind is SpanKind.PRODUCER
    assert create.parent is not None
    assert create.parent.span_id == server.context.span_id
    assert process.parent is not None
    assert process.parent.span_id == create.context.span_id
    assert process.kind is SpanKind.CONSUMER
    sends = [s for s in spans if s.name == "send audit"]
    linked = [s for s in sends if any(link.context.trace_id == trace_id for link in s.links)]
    assert len(linked) == 1, "the send span links to the event's creation span"
    assert linked[0].kind is SpanKind.CLIENT
    assert (linked[0].attributes or {}).get("messaging.system") == "servicebus"
    assert (process.attributes or {}).get("messaging.servicebus.disposition_status") == "complete"
    # One per-message span, ours: the Azure SDK's ServiceBus.message duplicate is left out.
    assert [s for s in spans if s.kind is SpanKind.PRODUCER] == [create]
    # Inside our send and process spans the SDK's own send and settlement spans, which
    # would repeat them, are left out too.
    ours = {span.context.span_id for span in [*sends, process]}
    repeated = [
        s.name
        for s in spans
        if s.name in {"ServiceBus.send", "ServiceBus.schedule", "ServiceBus.complete"}
        and s.parent is not None
        and s.parent.span_id in ours
    ]
    assert repeated == []
    # No ASGI-internal spans (the contrib middleware's "http receive"/"http send").
    assert not [
        s.name
        for s in spans
        if s.kind is SpanKind.INTERNAL
        and s.parent is not None
        and s.parent.span_id == server.context.span_id
    ]

    # Store spans (SQLAlchemy instrumentation, as configure_telemetry installs it): the
    # outbox write under the HTTP request, the audit append under the delivery's process span.
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == trace_id}

    def under(span: ReadableSpan, ancestor: ReadableSpan) -> bool:
        parent = span.parent
        while parent is not None:
            if parent.span_id == ancestor.context.span_id:
                return True
            parent = by_id[parent.span_id].parent if parent.span_id in by_id else None
        return False

    def statements(ancestor: ReadableSpan) -> list[str]:
        return [
            str((s.attributes or {}).get("db.statement"))
            for s in by_id.values()
            if s.kind is SpanKind.CLIENT
            and (s.attributes or {}).get("db.system") == "sqlite"
            and under(s, ancestor)
        ]

    assert any(sql.startswith("INSERT INTO producer_outbox") for sql in statements(server)), (
        statements(server)
    )
    assert any(sql.startswith("INSERT INTO audit_events") for sql in statements(process)), (
        statements(process)
    )
