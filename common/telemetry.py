"""OpenTelemetry set-up for one process: resource, exporters chosen by environment, logs.

Call :func:`configure_telemetry` once from the process entry point (never from library
code or app factories, so tests can install in-memory exporters instead).

Exporter choice (``exporter="auto"``), first match wins:

1. ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set -> Azure Monitor
   (``azure-monitor-opentelemetry``,
   https://learn.microsoft.com/azure/azure-monitor/app/opentelemetry-enable?tabs=python);
2. ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set -> OTLP over HTTP, all
   other ``OTEL_EXPORTER_OTLP_*`` variables honoured by the exporter itself;
3. ``telemetry_file`` set -> JSON lines of spans and metrics in that file (``make run``
   writes one; ``python -m tools.traceview`` renders it);
4. ``environment == "development"`` -> console (stderr);
5. otherwise nothing. ``OTEL_SDK_DISABLED=true`` or ``exporter="none"`` always means nothing.
"""

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from pydantic import BaseModel

from common.logs import configure_logging

Exporter = Literal["auto", "azure-monitor", "otlp", "file", "console", "none"]
LogFormat = Literal["text", "json"]

logger = logging.getLogger(__name__)


class TelemetrySettings(BaseModel):
    """Telemetry and logging fields, mixed into each component's settings.

    Attributes:
        environment: ``deployment.environment.name`` resource attribute; ``development``
            also means readable text logs and console export by default.
        telemetry_exporter: ``auto`` (see module docstring), or force one.
        telemetry_file: JSON-lines file for spans and metrics (exporter ``file``).
        metric_export_interval: Seconds between metric exports.
        log_format: ``text`` or ``json``; default text in development, JSON otherwise.
        log_level: Python logging level name.
    """

    environment: str = "development"
    telemetry_exporter: Exporter = "auto"
    telemetry_file: Path | None = None
    metric_export_interval: float = 10.0
    log_format: LogFormat | None = None
    log_level: str = "INFO"


@dataclass
class Telemetry:
    """What :func:`configure_telemetry` set up; call :meth:`shutdown` before exiting."""

    exporter: Exporter
    _shutdown: list[Callable[[], object]] = field(default_factory=list)

    def shutdown(self) -> None:
        """Flush and stop exporters (bounded by the SDK's own export timeouts)."""
        for step in reversed(self._shutdown):
            step()
        self._shutdown.clear()


def package_version() -> str:
    try:
        return version("servicebus-events")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "0+unknown"


def build_resource(service_name: str, environment: str) -> Resource:
    """Resource naming the service, its version, instance and deployment environment.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` still override, as the spec says.
    """
    return Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "servicebus-events",
            "service.version": package_version(),
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            "deployment.environment.name": environment,
        }
    )


def choose_exporter(settings: TelemetrySettings) -> Exporter:
    """Resolve ``auto`` from the environment (see the module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return "none"
    if settings.telemetry_exporter != "auto":
        return settings.telemetry_exporter
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return "azure-monitor"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return "otlp"
    if settings.telemetry_file is not None:
        return "file"
    if settings.environment == "development":
        return "console"
    return "none"


def configure_telemetry(service_name: str, settings: TelemetrySettings) -> Telemetry:
    """Install global tracer and meter providers and configure logging.

    Args:
        service_name: ``service.name``, e.g. ``producer``.
        settings: The component's telemetry settings.

    Returns:
        A handle whose ``shutdown()`` flushes pending telemetry.

    Raises:
        ValueError: exporter ``file`` without ``telemetry_file``.
    """
    exporter = choose_exporter(settings)
    development = settings.environment == "development"
    log_format = settings.log_format or ("text" if development else "json")
    configure_logging(service_name, log_format, settings.log_level)
    telemetry = Telemetry(exporter)
    if exporter == "none":
        return telemetry
    resource = build_resource(service_name, settings.environment)
    if exporter == "azure-monitor":
        # The distro wires traces, metrics and logs to Application Insights itself.
        from azure.monitor.opentelemetry import configure_azure_monitor

        # FastAPI's own telemetry makes the server spans (producer/app.py); the distro's
        # contrib instrumentation would replace them with a slower, second route match.
        configure_azure_monitor(
            resource=resource,
            logger_name=None,
            instrumentation_options={"fastapi": {"enabled": False}},
        )
        enable_azure_sdk_tracing()
        _instrument_libraries()
        return telemetry

    span_exporter, metric_exporter = _exporters(exporter, settings, telemetry)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(
        metric_exporter, export_interval_millis=settings.metric_export_interval * 1000
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    telemetry._shutdown.extend([tracer_provider.shutdown, meter_provider.shutdown])
    enable_azure_sdk_tracing()
    _instrument_libraries()
    logger.info("telemetry: exporting with %s", exporter)
    return telemetry


def _exporters(
    exporter: Exporter, settings: TelemetrySettings, telemetry: Telemetry
) -> tuple[SpanExporter, MetricExporter]:
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(), OTLPMetricExporter()
    if exporter == "file":
        if settings.telemetry_file is None:
            raise ValueError("telemetry exporter 'file' needs telemetry_file")
        settings.telemetry_file.parent.mkdir(parents=True, exist_ok=True)
        out: IO[str] = settings.telemetry_file.open("a", encoding="utf-8", buffering=1)
        telemetry._shutdown.insert(0, out.close)
        # The SDK's console exporters take any stream and formatter: one JSON object a line.
        return (
            ConsoleSpanExporter(out=out, formatter=lambda span: span.to_json(indent=None) + "\n"),
            ConsoleMetricExporter(out=out, formatter=lambda data: data.to_json(indent=None) + "\n"),
        )
    import sys

    return ConsoleSpanExporter(out=sys.stderr), ConsoleMetricExporter(out=sys.stderr)


def enable_azure_sdk_tracing() -> None:
    """Let azure-servicebus emit its own spans (send, receive, settle) into our provider.

    Its send path also stamps ``traceparent``/``Diagnostic-Id`` on each message, but only
    where the property is absent, so context we inject first (from the outbox) wins.
    """
    try:
        from azure.core.settings import settings as azure_settings
        from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan

        azure_settings.tracing_implementation = OpenTelemetrySpan
    except ImportError:  # azure-core-tracing-opentelemetry not installed: our spans only
        logger.info("azure-core-tracing-opentelemetry not installed; SDK spans off")


def _instrument_libraries() -> None:
    """Client spans for webhook calls (httpx) and store queries (SQLAlchemy)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (HTTPXClientInstrumentor(), SQLAlchemyInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
