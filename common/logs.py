"""Process logging: readable text in development, JSON lines elsewhere.

Every record carries ``trace_id`` and ``span_id`` of the span current when it was logged
(OpenTelemetry's logging instrumentation adds them), so a log line can be found from a
trace and the other way round.
"""

import logging
import sys
from typing import Literal

from opentelemetry.instrumentation.logging import LoggingInstrumentor
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = (
    "%(asctime)s %(levelname)-7s %(name)s [trace=%(otelTraceID)s span=%(otelSpanID)s] %(message)s"
)
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(otelTraceID)s %(otelSpanID)s"
_JSON_RENAMES = {
    "asctime": "time",
    "levelname": "level",
    "name": "logger",
    "otelTraceID": "trace_id",
    "otelSpanID": "span_id",
}


def configure_logging(service_name: str, log_format: Literal["text", "json"], level: str) -> None:
    """Replace the root handlers with one stderr handler in the chosen format.

    Args:
        service_name: Added to JSON lines as ``service``.
        log_format: ``text`` or ``json``.
        level: Logging level name, e.g. ``INFO``.
    """
    instrumentor = LoggingInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(set_logging_format=False, inject_trace_context=True)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields=_JSON_RENAMES,
                static_fields={"service": service_name},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The AMQP client logs every link state change at INFO, and Alembic each of its
    # autogenerate plugins on every start; keep ours readable.
    for noisy in ("azure", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
