"""OpenTelemetry set-up for one process: resource, exporters chosen by environment, logs.

Call :func:`configure_telemetry` once from the process entry point (never from library
code or app factories, so tests can install in-memory exporters instead).

Exporter choice (``exporter="auto"``), first match wins:

1. ``OTEL_TRACES_EXPORTER`` (the standard variable,
   https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#exporter-selection)
   set to ``console``, ``otlp`` or ``none`` -> that exporter;
2. ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set -> Azure Monitor
   (``azure-monitor-opentelemetry``,
   https://learn.microsoft.com/azure/azure-monitor/app/opentelemetry-enable?tabs=python);
3. ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) set -> OTLP over HTTP, all
   other ``OTEL_EXPORTER_OTLP_*`` variables honoured by the exporter itself;
4. ``telemetry_file`` set -> JSON lines of spans and metrics in that file (``make run``
   writes one; ``python -m tools.traceview`` renders it);
5. ``environment == "development"`` -> ``summary``: one log line per HTTP request and per
   delivery processed (:mod:`common.span_summary`), no metrics; ``console`` prints every
   span and metric as JSON on stderr instead;
6. otherwise nothing. ``OTEL_SDK_DISABLED=true`` or ``exporter="none"`` always means nothing.

Sampling follows the standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(:func:`traces_sampler`; default ``parentbased_always_on``: every trace a caller did not
already decide on is kept). Application Insights reads the same variables through its
distro, whose own default keeps 5 traces per second.
"""

import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
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
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.semconv._incubating.attributes.deployment_attributes import (
    DEPLOYMENT_ENVIRONMENT_NAME,
)
from opentelemetry.semconv._incubating.attributes.service_attributes import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_NAMESPACE,
    SERVICE_VERSION,
)
from pydantic import BaseModel, Field

from common.durations import Duration
from common.logs import configure_logging
from common.span_stream import BatchedStreamSpanExporter, json_line, pretty_json
from common.span_summary import SpanSummaryProcessor

Exporter = Literal["auto", "azure-monitor", "otlp", "file", "console", "summary", "none"]
LogFormat = Literal["text", "json"]

logger = logging.getLogger(__name__)

_STANDARD_TRACES_EXPORTERS: dict[str, Exporter] = {
    "console": "console",
    "otlp": "otlp",
    "none": "none",
}
"""``OTEL_TRACES_EXPORTER`` values honoured, and the exporter each selects."""

DEFAULT_SAMPLER = "parentbased_always_on"
"""``OTEL_TRACES_SAMPLER`` when unset, as in the OpenTelemetry SDK."""
_FIXED_SAMPLERS: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}
_RATIO_SAMPLERS: dict[str, Callable[[float], Sampler]] = {
    "traceidratio": TraceIdRatioBased,
    "parentbased_traceidratio": ParentBasedTraceIdRatio,
}


class TelemetrySettings(BaseModel):
    """Telemetry and logging fields, mixed into each component's settings.

    Attributes:
        environment: ``deployment.environment.name`` resource attribute; ``development``
            also means readable text logs and, by default, one log line per request or
            delivery instead of exported spans.
        telemetry_exporter: ``auto`` (see module docstring), or force one.
        telemetry_file: JSON-lines file for spans and metrics (exporter ``file``).
        metric_export_interval: Time between metric exports.
        log_format: ``text`` or ``json``; default text in development, JSON otherwise.
        log_level: Python logging level name.
    """

    environment: str = "development"
    telemetry_exporter: Exporter = "auto"
    telemetry_file: Path | None = None
    metric_export_interval: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))
    log_format: LogFormat | None = None
    log_level: str = "INFO"


SHUTDOWN_TIMEOUT = 3.0
"""Seconds :meth:`Telemetry.shutdown` gives the exporters by default, all together.

Container Apps kills a replica 30 s after SIGTERM
(https://learn.microsoft.com/azure/container-apps/application-lifecycle-management#shutdown);
the consumer's default grace period (25 s) plus this stays inside it. The exporters' own
timeouts are longer (OTLP: 10 s per export, OpenTelemetry's
``OTEL_EXPORTER_OTLP_TIMEOUT``), and the SDK's span processors do not take a shutdown
timeout at all, so the bound is kept here.
"""

ShutdownStep = Callable[[float], object]
"""Flushes and stops one provider or stream; takes the seconds it may use."""


@dataclass(frozen=True)
class ShutdownReport:
    """What :meth:`Telemetry.shutdown` managed within its time.

    Attributes:
        timeout: Seconds the exporters were given (together, they run at once).
        finished: Steps that finished in time (``traces``, ``metrics``, ``logs``).
        abandoned: Steps still exporting at the timeout; what they had not exported is
            lost (the process exits without waiting for them).
    """

    timeout: float
    finished: tuple[str, ...]
    abandoned: tuple[str, ...]


@dataclass
class Telemetry:
    """What :func:`configure_telemetry` set up; call :meth:`shutdown` before exiting."""

    exporter: Exporter
    _shutdown: list[tuple[str, ShutdownStep]] = field(default_factory=list)
    _close_after: list[Callable[[], object]] = field(default_factory=list)
    """Run once every step has finished (the telemetry file the exporters write to)."""

    def add_shutdown_step(self, name: str, step: ShutdownStep) -> None:
        """Run ``step`` at :meth:`shutdown` (``name`` is how reports and logs call it)."""
        self._shutdown.append((name, step))

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> ShutdownReport:
        """Flush and stop the exporters, all at once, giving up after ``timeout`` seconds.

        Each step runs in a daemon thread of its own and is handed the budget (the meter
        provider's ``shutdown(timeout_millis)`` honours it; span processors have no such
        parameter in the SDK), so one exporter stuck on an unresponsive collector neither
        delays the others nor keeps the process from exiting. Steps still running at the
        timeout are abandoned with one WARNING line naming them (and the telemetry file,
        if any, is left to close with the process). Calling it again does nothing.

        Args:
            timeout: Seconds for all steps together (at least 0).

        Returns:
            Which steps finished and which were abandoned.
        """
        steps, self._shutdown = self._shutdown, []
        budget = max(0.0, timeout)
        deadline = time.monotonic() + budget
        threads = [
            (name, threading.Thread(target=_run_step, args=(name, step, budget), daemon=True))
            for name, step in steps
        ]
        for _, thread in threads:
            thread.start()
        for _, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        abandoned = tuple(name for name, thread in threads if thread.is_alive())
        finished = tuple(name for name, thread in threads if not thread.is_alive())
        if not abandoned:
            closers, self._close_after = self._close_after, []
            for close in closers:
                close()
        else:
            logger.warning(
                "telemetry: %s still exporting after %.1f s: abandoned, what was not "
                "exported yet is lost",
                ", ".join(abandoned),
                budget,
            )
        return ShutdownReport(budget, finished, abandoned)


def _run_step(name: str, step: ShutdownStep, budget: float) -> None:
    try:
        step(budget)
    except Exception:
        logger.exception("telemetry: shutting down %s failed", name)


def shutdown_step(provider: object) -> ShutdownStep:
    """A :class:`Telemetry` step shutting down an SDK provider (tracer, meter or logger
    provider), passing it the budget in milliseconds where its ``shutdown`` takes one."""
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is None:
        return lambda _: None
    if "timeout_millis" in inspect.signature(shutdown).parameters:
        return lambda budget: shutdown(timeout_millis=budget * 1000)
    return lambda _: shutdown()


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
            SERVICE_NAME: service_name,
            SERVICE_NAMESPACE: "servicebus-events",
            SERVICE_VERSION: package_version(),
            SERVICE_INSTANCE_ID: f"{socket.gethostname()}-{os.getpid()}",
            DEPLOYMENT_ENVIRONMENT_NAME: environment,
        }
    )


def traces_sampler() -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` name.

    The standard variables
    (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#general-sdk-configuration):
    ``always_on``, ``always_off``, ``traceidratio``, ``parentbased_always_on`` (default),
    ``parentbased_always_off``, ``parentbased_traceidratio``; the ratio samplers take the
    fraction of traces to keep (0 to 1, default 1) from ``OTEL_TRACES_SAMPLER_ARG``. The
    parent-based ones follow the caller's decision (``traceparent`` of an HTTP request or
    a message) and apply theirs only to traces that start here, so a trace is kept or
    dropped whole across producer and consumer.

    The SDK reads the same variables when given no sampler; it is done here because the
    SDK stops the process with a traceback on a ratio outside 0..1. An invalid value is
    logged as one WARNING naming the variable and replaced by the default, as the
    specification asks.
    """
    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or DEFAULT_SAMPLER
    if name in _FIXED_SAMPLERS:
        return _FIXED_SAMPLERS[name]
    if name not in _RATIO_SAMPLERS:
        logger.warning(
            "OTEL_TRACES_SAMPLER=%s ignored: expected one of %s; using %s",
            name,
            ", ".join([*_FIXED_SAMPLERS, *_RATIO_SAMPLERS]),
            DEFAULT_SAMPLER,
        )
        return _FIXED_SAMPLERS[DEFAULT_SAMPLER]
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(argument) if argument else 1.0
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        logger.warning(
            "OTEL_TRACES_SAMPLER_ARG=%s ignored: %s takes a fraction from 0 to 1; using 1",
            argument,
            name,
        )
        ratio = 1.0
    return _RATIO_SAMPLERS[name](ratio)


def choose_exporter(settings: TelemetrySettings) -> Exporter:
    """Resolve ``auto`` from the environment (see the module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return "none"
    if settings.telemetry_exporter != "auto":
        return settings.telemetry_exporter
    standard = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if standard in _STANDARD_TRACES_EXPORTERS:
        return _STANDARD_TRACES_EXPORTERS[standard]
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return "azure-monitor"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return "otlp"
    if settings.telemetry_file is not None:
        return "file"
    if settings.environment == "development":
        return "summary"
    return "none"


def configure_telemetry(service_name: str, settings: TelemetrySettings) -> Telemetry:
    """Install global tracer and meter providers and configure logging.

    Args:
        service_name: ``service.name``, e.g. ``producer``.
        settings: The component's telemetry settings.

    Returns:
        A handle whose ``shutdown()`` flushes pending telemetry within a bounded time;
        call it before exiting (the providers have no exit handlers of their own).

    Raises:
        ValueError: exporter ``file`` without ``telemetry_file``.
    """
    exporter = choose_exporter(settings)
    development = settings.environment == "development"
    log_format = settings.log_format or ("text" if development else "json")
    configure_logging(service_name, log_format, settings.log_level)
    standard = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if standard and standard not in _STANDARD_TRACES_EXPORTERS:
        logger.warning(
            "OTEL_TRACES_EXPORTER=%s ignored: only %s are supported",
            standard,
            ", ".join(_STANDARD_TRACES_EXPORTERS),
        )
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
        from opentelemetry._logs import get_logger_provider

        # The distro installed these globally; flush them within the shutdown budget
        # rather than leave them to the SDK's exit handlers (30 s each).
        telemetry.add_shutdown_step("traces", shutdown_step(trace.get_tracer_provider()))
        telemetry.add_shutdown_step("metrics", shutdown_step(metrics.get_meter_provider()))
        telemetry.add_shutdown_step("logs", shutdown_step(get_logger_provider()))
        enable_azure_sdk_tracing()
        instrument_libraries()
        return telemetry

    # No exit handlers: the SDK's flush for 30 s each there; Telemetry.shutdown bounds it.
    tracer_provider = TracerProvider(
        resource=resource, sampler=traces_sampler(), shutdown_on_exit=False
    )
    trace.set_tracer_provider(tracer_provider)
    telemetry.add_shutdown_step("traces", shutdown_step(tracer_provider))
    if exporter == "summary":
        # Spans still exist (trace ids in logs, context on messages); only a line each
        # for requests and deliveries is printed, and metrics are not collected.
        tracer_provider.add_span_processor(SpanSummaryProcessor())
        logger.info(
            "telemetry: one line per request or delivery; every span and metric with "
            "OTEL_TRACES_EXPORTER=console, *_TELEMETRY_FILE or OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    else:
        span_exporter, metric_exporter = exporters(exporter, settings, telemetry)
        tracer_provider.add_span_processor(batch_processor(span_exporter))
        reader = PeriodicExportingMetricReader(
            metric_exporter,
            export_interval_millis=settings.metric_export_interval.total_seconds() * 1000,
        )
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[reader], shutdown_on_exit=False
        )
        metrics.set_meter_provider(meter_provider)
        telemetry.add_shutdown_step("metrics", shutdown_step(meter_provider))
        logger.info(
            "telemetry: exporting with %s, sampler %s",
            exporter,
            tracer_provider.sampler.get_description(),
        )
    enable_azure_sdk_tracing()
    instrument_libraries()
    return telemetry


SPAN_EXPORT_BATCH = 512
"""Spans per export call (the SDK's default).

Encoding a batch holds the GIL on the exporter thread, and the event loop waits while it
does: 2,048 spans at a time stalled the producer and the consumer for 100-300 ms every
few seconds (end-to-end p99 150-220 ms at 200 events/s), and at 512 the same loads ran
with p99 97-141 ms and accepted as much or more (docs/benchmarks/findings.md §16). The
batch leaves when the queue reaches this size or every ``OTEL_BSP_SCHEDULE_DELAY`` (5 s),
whichever comes first.
"""
SPAN_QUEUE = 8192
"""Spans held while an export is under way (the SDK's default is 2048); beyond it new spans
are dropped. Sixteen batches: a few seconds of the producer's peak rate, a few MB."""


def batch_processor(exporter: SpanExporter) -> BatchSpanProcessor:
    """A ``BatchSpanProcessor`` sized by :data:`SPAN_EXPORT_BATCH` and :data:`SPAN_QUEUE`.

    With ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` or ``OTEL_BSP_MAX_QUEUE_SIZE`` set, both sizes
    are the SDK's (those variables, else its defaults), so the two stay consistent;
    ``OTEL_BSP_SCHEDULE_DELAY`` (ms) applies either way
    (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#batch-span-processor).
    """
    if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or os.environ.get(
        "OTEL_BSP_MAX_QUEUE_SIZE"
    ):
        return BatchSpanProcessor(exporter)
    return BatchSpanProcessor(
        exporter, max_queue_size=SPAN_QUEUE, max_export_batch_size=SPAN_EXPORT_BATCH
    )


def exporters(
    exporter: Exporter, settings: TelemetrySettings, telemetry: Telemetry
) -> tuple[SpanExporter, MetricExporter]:
    """Span and metric exporters for ``otlp``, ``file`` or ``console``.

    ``file`` appends JSON lines to ``settings.telemetry_file`` (closed by ``telemetry`` at
    shutdown); ``console`` writes indented JSON to stderr. Both write each batch of spans
    in one write (:mod:`common.span_stream`).

    Raises:
        ValueError: ``file`` without ``telemetry_file``.
    """
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(), OTLPMetricExporter()
    if exporter == "file":
        if settings.telemetry_file is None:
            raise ValueError("telemetry exporter 'file' needs telemetry_file")
        settings.telemetry_file.parent.mkdir(parents=True, exist_ok=True)
        # Block-buffered: each exporter writes a whole batch, then flushes, once.
        out: IO[str] = settings.telemetry_file.open("a", encoding="utf-8")
        telemetry._close_after.append(out.close)
        return (
            BatchedStreamSpanExporter(out, json_line),
            ConsoleMetricExporter(out=out, formatter=lambda data: data.to_json(indent=None) + "\n"),
        )
    import sys

    return BatchedStreamSpanExporter(sys.stderr, pretty_json), ConsoleMetricExporter(out=sys.stderr)


def enable_azure_sdk_tracing() -> None:
    """Let azure-servicebus emit its own spans (send, receive, settle) into our provider.

    Its send path also stamps ``traceparent``/``Diagnostic-Id`` on each message, but only
    where the property is absent, so context we inject first (from the outbox) wins. Its
    per-message ``ServiceBus.message`` span is left out (:mod:`common.sdk_spans`): our
    ``create`` span is that message's span.
    """
    try:
        from azure.core.settings import settings as azure_settings

        from common.sdk_spans import ServiceBusSdkSpan

        azure_settings.tracing_implementation = ServiceBusSdkSpan
    except ImportError:  # azure-core-tracing-opentelemetry not installed: our spans only
        logger.info("azure-core-tracing-opentelemetry not installed; SDK spans off")


def instrument_libraries() -> None:
    """Client spans for webhook calls (httpx) and store queries (SQLAlchemy).

    Idempotent. A dependency outside an instrumentation's supported range makes it log an
    ERROR and instrument nothing (``tests/e2e/test_clean_start.py`` and
    ``tests/e2e/test_tracing.py`` fail then), so ``pyproject.toml`` bounds SQLAlchemy.
    """
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (HTTPXClientInstrumentor(), SQLAlchemyInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
