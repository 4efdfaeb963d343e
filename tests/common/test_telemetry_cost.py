"""What telemetry costs per event: one span per message, sampling by the standard
variables, span exporters that write a batch at a time (issue 22, item 3)."""

import asyncio
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON
from opentelemetry.trace import SpanKind

from common.telemetry import Telemetry, TelemetrySettings, exporters, traces_sampler
from producer.telemetry import attach_context, creation_context
from tests.conftest import AUDIT_QUEUE
from tests.telemetry_support import azure_sdk_tracing, in_memory_telemetry
from tools.processes import ROOT

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-00"


def _property(message: object, name: str) -> str | None:
    properties = getattr(message, "application_properties", None) or {}
    value = properties.get(name.encode(), properties.get(name))
    return value.decode() if isinstance(value, bytes) else value


async def test_a_sent_message_has_one_producer_span_and_still_carries_diagnostic_id(
    connection_string: str,
) -> None:
    collected = in_memory_telemetry()
    event_id = str(uuid.uuid4())
    with azure_sdk_tracing():
        stored = creation_context(AUDIT_QUEUE, event_id, "io.test.event")
        ours = ServiceBusMessage(b"{}", message_id=event_id)
        attach_context(ours, stored)
        foreign = ServiceBusMessage(b"{}", message_id=str(uuid.uuid4()))  # no context of ours
        async with ServiceBusClient.from_connection_string(connection_string) as client:
            with trace.get_tracer("tests").start_as_current_span("relay pass") as relay:
                async with client.get_queue_sender(AUDIT_QUEUE) as sender:
                    batch = await sender.create_message_batch()
                    batch.add_message(ours)
                    batch.add_message(foreign)
                    await sender.send_messages(batch)
            async with client.get_queue_receiver(AUDIT_QUEUE, max_wait_time=5) as receiver:
                received: dict[str, ServiceBusReceivedMessage] = {}
                deadline = asyncio.get_running_loop().time() + 30
                while len(received) < 2:
                    assert asyncio.get_running_loop().time() < deadline, "messages not received"
                    for message in await receiver.receive_messages(2, max_wait_time=5):
                        received[str(message.message_id)] = message
                        await receiver.complete_message(message)

    assert stored is not None
    create_traceparent = json.loads(stored)["traceparent"]
    got = received[event_id]
    assert _property(got, "traceparent") == create_traceparent
    assert _property(got, "Diagnostic-Id") == create_traceparent
    # A message without our context is still stamped, with the span current at send time.
    relay_id = format(relay.get_span_context().span_id, "016x")
    stamped = _property(received[str(foreign.message_id)], "Diagnostic-Id")
    assert stamped is not None
    assert stamped.split("-")[2] == relay_id
    producer_spans = [
        s.name for s in collected.spans.get_finished_spans() if s.kind is SpanKind.PRODUCER
    ]
    assert producer_spans == [f"create {AUDIT_QUEUE}"], "one per-message span: ours"
    assert collected.finished("ServiceBus.send"), "the SDK's send span is kept"


def _run_sampled(tmp_path: Path, env: dict[str, str]) -> tuple[list[dict[str, object]], str, str]:
    """Run a process configured by ``configure_telemetry`` with ``env``; it starts one root
    create span and one process span under each of SAMPLED and UNSAMPLED, then shuts
    telemetry down. Returns (spans in its telemetry file, stored create context, stderr)."""
    out = tmp_path / "telemetry.jsonl"
    script = f"""
from opentelemetry import trace
from common.messaging import context_from_properties
from common.telemetry import TelemetrySettings, configure_telemetry
from producer.telemetry import creation_context

telemetry = configure_telemetry(
    "sampling-test", TelemetrySettings(environment="test", telemetry_file={str(out)!r})
)
print(creation_context("audit", "root-event", "io.test.event"))
tracer = trace.get_tracer("test")
for parent in ({SAMPLED!r}, {UNSAMPLED!r}):
    context = context_from_properties({{"traceparent": parent}})
    with tracer.start_as_current_span("process audit", context=context):
        pass
telemetry.shutdown()
"""
    variables = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "APPLICATIONINSIGHTS_"))
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**variables, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    spans = [record for record in map(json.loads, lines) if "context" in record]
    return spans, done.stdout.strip(), done.stderr


def _trace_ids(spans: list[dict[str, object]]) -> list[tuple[object, str]]:
    return sorted(
        (span["name"], str(span["context"]["trace_id"]))  # type: ignore[index]
        for span in spans
    )


def test_ratio_zero_drops_new_traces_but_honours_a_sampled_parent(tmp_path: Path) -> None:
    spans, stored, _ = _run_sampled(
        tmp_path,
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
    )

    assert _trace_ids(spans) == [("process audit", "0x" + SAMPLED.split("-")[1])]
    # The dropped create span's decision travels on the message: the consumer drops too.
    flags = int(json.loads(stored)["traceparent"].split("-")[3], 16)
    assert not flags & 1, "sampled flag clear"


def test_default_keeps_every_new_trace_and_follows_the_parent(tmp_path: Path) -> None:
    spans, stored, _ = _run_sampled(tmp_path, {})

    names = _trace_ids(spans)
    assert names == sorted(
        [
            ("create audit", "0x" + json.loads(stored)["traceparent"].split("-")[1]),
            ("process audit", "0x" + SAMPLED.split("-")[1]),
        ]
    )


def test_a_ratio_outside_zero_to_one_is_named_and_replaced_by_one(tmp_path: Path) -> None:
    spans, _, stderr = _run_sampled(
        tmp_path, {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"}
    )

    assert "OTEL_TRACES_SAMPLER_ARG=1.5 ignored" in stderr
    assert "Traceback" not in stderr
    # traceidratio 1 ignores parents: even the unsampled parent's child is kept.
    assert sorted(str(span["name"]) for span in spans) == [
        "create audit",
        "process audit",
        "process audit",
    ]


def _spans(count: int) -> list[ReadableSpan]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("test")
    for n in range(count):
        with tracer.start_as_current_span(f"span {n}"):
            pass
    return list(exported.get_finished_spans())


class _CountingStream(io.StringIO):
    """A text stream counting ``write`` calls."""

    def __init__(self, target: io.TextIOBase | None = None) -> None:
        super().__init__()
        self.writes = 0
        self.target = target

    def write(self, text: str) -> int:
        self.writes += 1
        if self.target is not None:
            self.target.write(text)
        return super().write(text)

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()


def test_the_telemetry_file_gets_a_batch_per_write_and_is_complete_after_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "telemetry.jsonl"
    telemetry = Telemetry("file")
    span_exporter, _ = exporters("file", TelemetrySettings(telemetry_file=path), telemetry)
    file = span_exporter.out  # type: ignore[attr-defined]
    counting = _CountingStream(file)
    span_exporter.out = counting  # type: ignore[attr-defined]

    span_exporter.export(_spans(200))

    assert counting.writes == 1
    lines = path.read_text(encoding="utf-8").splitlines()  # flushed: readable at once
    assert [json.loads(line)["name"] for line in lines] == [f"span {n}" for n in range(200)]
    file.close()


def test_the_console_gets_a_batch_per_write(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = _CountingStream()
    monkeypatch.setattr(sys, "stderr", stderr)
    span_exporter, _ = exporters("console", TelemetrySettings(), Telemetry("console"))

    span_exporter.export(_spans(50))

    assert stderr.writes == 1
    assert stderr.getvalue().count('"name": "span ') == 50


def test_an_unknown_sampler_is_named_and_the_default_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_ratio")

    sampler = traces_sampler()

    assert sampler is DEFAULT_ON
    assert "OTEL_TRACES_SAMPLER=parentbased_ratio ignored" in caplog.text
