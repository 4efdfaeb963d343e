"""Which exporter a process gets, and the one-line summaries of development mode."""

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from common.span_summary import SpanSummaryProcessor, summary_line
from common.telemetry import TelemetrySettings, choose_exporter

_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_development_default_is_the_one_line_summary() -> None:
    assert choose_exporter(TelemetrySettings()) == "summary"
    assert choose_exporter(TelemetrySettings(environment="production")) == "none"


@pytest.mark.parametrize(
    ("value", "chosen"), [("console", "console"), ("OTLP", "otlp"), ("none", "none")]
)
def test_standard_variable_selects_the_full_exporters(
    monkeypatch: pytest.MonkeyPatch, value: str, chosen: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert choose_exporter(TelemetrySettings()) == chosen


def test_own_setting_and_sdk_disabled_win_over_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert choose_exporter(TelemetrySettings(telemetry_exporter="none")) == "none"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert choose_exporter(TelemetrySettings()) == "none"


def test_unsupported_standard_value_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert choose_exporter(TelemetrySettings()) == "summary"


def _spans(*processors: SpanProcessor) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    for processor in processors:
        provider.add_span_processor(processor)
    return provider.get_tracer("test"), exported


def _only(exported: InMemorySpanExporter) -> ReadableSpan:
    [span] = exported.get_finished_spans()
    return span


def test_request_and_delivery_lines_name_what_happened() -> None:
    tracer, exported = _spans()
    with tracer.start_as_current_span(
        "POST /v1/audit-events",
        kind=SpanKind.SERVER,
        attributes={"http.response.status_code": 202},
    ):
        pass
    line = summary_line(_only(exported))
    assert line is not None
    assert line.startswith("POST /v1/audit-events -> 202 in ")
    assert line.endswith(" ms")

    exported.clear()
    with tracer.start_as_current_span(
        "process audit",
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.message.id": "poison-1",
            "messaging.servicebus.disposition_status": "dead_letter",
            "messaging.servicebus.dead_letter_reason": "InvalidJson",
        },
    ) as span:
        span.set_status(Status(StatusCode.ERROR, "InvalidJson"))
    line = summary_line(_only(exported))
    assert line is not None
    assert line.startswith("process audit poison-1 -> dead_letter in ")
    assert line.endswith("(InvalidJson)")


def test_sends_and_store_statements_get_no_line() -> None:
    tracer, exported = _spans()
    for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.INTERNAL):
        with tracer.start_as_current_span("send audit", kind=kind):
            pass
    assert [summary_line(span) for span in exported.get_finished_spans()] == [None] * 3


def test_processor_logs_one_line_carrying_the_span_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, int]] = []

    class CurrentTrace(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            # What the logging instrumentation reads to fill ``trace_id``.
            seen.append((record.getMessage(), trace.get_current_span().get_span_context().trace_id))
            return True

    summary_logger = logging.getLogger("common.span_summary")
    current_trace = CurrentTrace()
    summary_logger.addFilter(current_trace)
    try:
        tracer, exported = _spans(SpanSummaryProcessor())
        with (
            caplog.at_level(logging.INFO, logger="common.span_summary"),
            tracer.start_as_current_span(
                "GET /healthz", kind=SpanKind.SERVER, attributes={"http.response.status_code": 200}
            ),
            tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT),
        ):
            pass
    finally:
        summary_logger.removeFilter(current_trace)
    server = next(s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server.context is not None
    [(message, trace_id)] = seen
    assert message.startswith("GET /healthz -> 200 in ")
    assert trace_id == server.context.trace_id
