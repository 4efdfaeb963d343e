"""In-memory OpenTelemetry exporters for tests (installed once per test process)."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common.telemetry import enable_azure_sdk_tracing, instrument_libraries


@dataclass
class Collected:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    def metric_points(self, name: str) -> list[tuple[dict[str, object], float]]:
        """(attributes, value) of every data point of metric ``name``."""
        data = self.metrics.get_metrics_data()
        points: list[tuple[dict[str, object], float]] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[union-attr]
                        points.append((dict(point.attributes or {}), float(value)))
        return points


_collected: Collected | None = None


def in_memory_telemetry() -> Collected:
    """Install global providers with in-memory exporters the first time; reuse after."""
    global _collected
    if _collected is None:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        instrumentor = LoggingInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(set_logging_format=False, inject_trace_context=True)
        _collected = Collected(spans, reader)
    _collected.spans.clear()
    return _collected


@contextmanager
def azure_sdk_tracing() -> Iterator[None]:
    """The SDK's own tracing on, as in production (its send path must not replace the
    context we put on messages), and off again after: it stamps trace properties on every
    message, which other tests in the same process would see."""
    from azure.core.settings import settings

    enable_azure_sdk_tracing()
    try:
        yield
    finally:
        settings.tracing_implementation.unset_value()


@contextmanager
def library_instrumentation() -> Iterator[None]:
    """The httpx and SQLAlchemy instrumentations on, as ``configure_telemetry`` turns them
    on in every process, and off again after (they patch the libraries process-wide)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrument_libraries()
    try:
        yield
    finally:
        for instrumentor in (HTTPXClientInstrumentor(), SQLAlchemyInstrumentor()):
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
