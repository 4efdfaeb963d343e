"""Consumer telemetry: process spans join the producer's trace; metrics count outcomes."""

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from common.messaging import context_from_properties, current_trace_headers, trace_properties
from consumer.errors import TransientError
from consumer.retry import RetryPolicy
from consumer.runtime.routing import Route
from consumer.telemetry import measure_dlq_depth
from contracts import AUDIT_EVENT_TYPE, EventEnvelope
from contracts.servicebus import to_servicebus_message
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.consumer.conftest import (
    FAST,
    StartWorker,
    audit_envelope,
    dead_letters,
    eventually,
    send,
)
from tests.telemetry_support import Collected, azure_sdk_tracing, in_memory_telemetry

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def collected() -> Iterator[Collected]:
    with azure_sdk_tracing():
        yield in_memory_telemetry()


def traced_message(envelope: EventEnvelope) -> tuple[ServiceBusMessage, str, str]:
    """The envelope's message carrying the context of a fresh producer span."""
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("send audit", kind=SpanKind.PRODUCER) as span:
        headers = current_trace_headers()
        context = span.get_span_context()
    message = to_servicebus_message(envelope)
    properties: dict[str | bytes, Any] = dict(message.application_properties or {})
    properties.update(trace_properties(headers))
    message.application_properties = properties
    return message, format(context.trace_id, "032x"), format(context.span_id, "016x")


async def test_process_span_continues_the_producers_trace_and_logs_carry_it(
    sb: ServiceBusClient,
    start_worker: StartWorker,
    collected: Collected,
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged: list[logging.LogRecord] = []

    async def handler(envelope: EventEnvelope) -> None:
        logging.getLogger("tests.handler").warning("handling %s", envelope.id)

    caplog.set_level(logging.WARNING, logger="tests.handler")
    start_worker({AUDIT_EVENT_TYPE: Route("audit", handler, FAST)})
    envelope = audit_envelope()
    message, trace_id, producer_span_id = traced_message(envelope)
    await send(sb, AUDIT_QUEUE, message)

    async def processed() -> bool:
        return any(
            s.attributes and s.attributes.get("messaging.message.id") == envelope.id
            for s in collected.finished(f"process {AUDIT_QUEUE}")
        )

    await eventually(processed)
    [span] = [
        s
        for s in collected.finished(f"process {AUDIT_QUEUE}")
        if s.attributes and s.attributes.get("messaging.message.id") == envelope.id
    ]
    assert span.kind is SpanKind.CONSUMER
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == producer_span_id
    attributes = dict(span.attributes or {})
    assert attributes["messaging.system"] == "servicebus"
    assert attributes["messaging.destination.name"] == AUDIT_QUEUE
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.servicebus.message.delivery_count"] == 0
    assert attributes["messaging.servicebus.disposition_status"] == "complete"
    logged = [r for r in caplog.records if r.name == "tests.handler"]
    assert [getattr(r, "otelTraceID", None) for r in logged] == [trace_id]


@pytest.mark.parametrize(
    "properties",
    [
        None,
        {},
        {b"eventType": b"x", b"schemaVersion": b"1"},
        {b"traceparent": TRACEPARENT.encode()},
        {"Diagnostic-Id": TRACEPARENT, "eventType": "x"},
        {b"TraceParent": TRACEPARENT.encode(), b"tracestate": b"k=v"},
    ],
)
def test_the_parent_context_is_found_in_every_spelling_and_only_there(
    properties: dict[Any, Any] | None,
) -> None:
    # context_from_properties decodes only the trace properties (it runs for every
    # message); it must still find the context in every spelling a sender may use.
    found = trace.get_current_span(context_from_properties(properties)).get_span_context()
    assert found.is_valid == any(
        (k.decode() if isinstance(k, bytes) else k).lower() in ("traceparent", "diagnostic-id")
        for k in properties or {}
    )
    if found.is_valid:
        assert f"{found.trace_id:032x}" == TRACEPARENT.split("-")[1]


async def test_retried_event_attempts_share_one_trace(
    sb: ServiceBusClient, start_worker: StartWorker, collected: Collected
) -> None:
    calls: list[int] = []

    async def fails_once(envelope: EventEnvelope) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("downstream busy")

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=2, delayed_initial_delay=0.2, delayed_jitter=0.05
    )
    start_worker({AUDIT_EVENT_TYPE: Route("audit", fails_once, policy)})
    envelope = audit_envelope()
    message, trace_id, _ = traced_message(envelope)
    await send(sb, AUDIT_QUEUE, message)

    def attempts() -> list[dict[str, object]]:
        spans = [
            s
            for s in collected.finished(f"process {AUDIT_QUEUE}")
            if format(s.context.trace_id, "032x") == trace_id
        ]
        return [dict(s.attributes or {}) for s in sorted(spans, key=lambda s: s.start_time or 0)]

    async def retried_and_done() -> bool:
        return len(attempts()) == 2

    await eventually(retried_and_done)
    outcomes = [a["messaging.servicebus.disposition_status"] for a in attempts()]
    assert outcomes == ["retry_scheduled", "complete"]
    assert [a["messaging.message.id"] for a in attempts()] == [
        envelope.id,
        f"{envelope.id}:retry:1",
    ]


async def test_metrics_count_outcomes_of_a_scripted_run(
    sb: ServiceBusClient, start_worker: StartWorker, collected: Collected
) -> None:
    failed_once: set[str] = set()

    async def handler(envelope: EventEnvelope) -> None:
        if envelope.data.action == "user.flaky" and envelope.id not in failed_once:  # type: ignore[union-attr]
            failed_once.add(envelope.id)
            raise TransientError("try later")

    policy = RetryPolicy(
        immediate_attempts=0, delayed_attempts=2, delayed_initial_delay=0.2, delayed_jitter=0.05
    )
    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", handler, policy)})
    good = [audit_envelope() for _ in range(3)]
    flaky = audit_envelope("user.flaky")
    poison = ServiceBusMessage(
        b"{oops", message_id=str(uuid.uuid4()), content_type="application/json"
    )
    await send(sb, AUDIT_QUEUE, *map(to_servicebus_message, [*good, flaky]), poison)
    await dead_letters(sb, AUDIT_QUEUE, 1)

    async def settled() -> bool:
        stats = running.stats()
        return stats.completed == 5 and sum(stats.dead_lettered.values()) == 1

    await eventually(settled)
    outcomes = {
        (attrs.get("outcome"), attrs.get("error.type")): value
        for attrs, value in collected.metric_points("servicebus_events.consumer.outcomes")
        if attrs.get("messaging.destination.name") == AUDIT_QUEUE
    }
    # Other tests in this process may have used the same queue name: compare this
    # worker's own counters with what the metric reports for it at least.
    assert outcomes[("completed", None)] >= 4
    assert outcomes[("retry_scheduled", None)] >= 1
    assert outcomes[("dead_lettered", "InvalidJson")] >= 1
    durations = [
        attrs
        for attrs, _ in collected.metric_points("messaging.process.duration")
        if attrs.get("messaging.destination.name") == AUDIT_QUEUE
    ]
    assert {a["outcome"] for a in durations} >= {"complete", "retry_scheduled", "dead_letter"}
    end_to_end = collected.metric_points("servicebus_events.event.end_to_end.duration")
    assert any(count >= 4 for _, count in end_to_end)


async def test_dlq_depth_gauge_counts_dead_letters(
    sb: ServiceBusClient, start_worker: StartWorker, collected: Collected
) -> None:
    running = start_worker({AUDIT_EVENT_TYPE: Route("audit", _never_called, FAST)})
    poison = [
        ServiceBusMessage(b"not json", message_id=f"dlq-depth-{n}", content_type="text/plain")
        for n in range(3)
    ]
    await send(sb, AUDIT_QUEUE, *poison)

    async def dead_lettered() -> bool:
        return sum(running.stats().dead_lettered.values()) == 3

    await eventually(dead_lettered)
    counted = await measure_dlq_depth(sb, [AUDIT_QUEUE, NOTIFICATIONS_QUEUE], limit=100)

    assert counted == {AUDIT_QUEUE: 3, NOTIFICATIONS_QUEUE: 0}
    depth = {
        attrs["messaging.destination.name"]: value
        for attrs, value in collected.metric_points("servicebus_events.dlq.depth")
    }
    assert depth[AUDIT_QUEUE] == 3
    assert depth[NOTIFICATIONS_QUEUE] == 0
    assert await measure_dlq_depth(sb, [AUDIT_QUEUE], limit=2) == {AUDIT_QUEUE: 2}  # capped


async def _never_called(envelope: EventEnvelope) -> None:
    raise AssertionError("poison must not reach the handler")
