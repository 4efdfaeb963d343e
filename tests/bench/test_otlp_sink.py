"""The benchmark's OTLP/HTTP sink accepts what the SDK's own OTLP exporters send.

If it did not (wrong path, a status the exporter retries, a framing error), the
"shipped telemetry" benchmark variants would measure exporters retrying and dropping
instead of a deployment exporting to its collector.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.systems import Service, start_sink


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Service]:
    service = start_sink(tmp_path)
    try:
        yield service
    finally:
        service.stop()


def stats(sink: Service) -> dict[str, dict[str, int]]:
    data: dict[str, dict[str, int]] = httpx.get(f"{sink.base_url}/stats").json()
    return data


def test_sdk_exporters_succeed_against_the_sink_and_it_counts_each_export(sink: Service) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    with tracer_provider.get_tracer("test").start_as_current_span("accept"):
        pass
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    meter_provider.get_meter("test").create_counter("accepted").add(3)
    metrics = reader.get_metrics_data()
    assert metrics is not None

    span_exporter = OTLPSpanExporter(endpoint=f"{sink.base_url}/v1/traces", timeout=5)
    metric_exporter = OTLPMetricExporter(endpoint=f"{sink.base_url}/v1/metrics", timeout=5)
    try:
        assert span_exporter.export(spans.get_finished_spans()) is SpanExportResult.SUCCESS
        assert span_exporter.export(spans.get_finished_spans()) is SpanExportResult.SUCCESS
        assert metric_exporter.export(metrics) is MetricExportResult.SUCCESS
    finally:
        span_exporter.shutdown()  # type: ignore[no-untyped-call]
        metric_exporter.shutdown()

    counted = stats(sink)
    assert counted["/v1/traces"]["requests"] == 2
    assert counted["/v1/traces"]["bytes"] > 0
    assert counted["/v1/metrics"]["requests"] == 1
    assert counted["/v1/logs"]["requests"] == 0


def test_other_paths_are_not_found_and_not_counted(sink: Service) -> None:
    response = httpx.post(f"{sink.base_url}/v1/trace", content=b"x")
    assert response.status_code == 404
    assert json.loads(httpx.get(f"{sink.base_url}/stats").content)["/v1/traces"]["requests"] == 0
