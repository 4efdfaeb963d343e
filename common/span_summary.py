"""One log line per HTTP request or message delivery: the development default for spans.

Printing every span and metric as pretty JSON (the SDK's console exporters) buries the
logs: ten requests made about 250 KB. In development, :class:`SpanSummaryProcessor`
instead logs one line for each SERVER span (an HTTP request) and each CONSUMER span (a
delivery processed), through the process's own log handler, so the line has the usual
format and carries the span's ``trace_id`` and ``span_id``::

    ... INFO common.span_summary [trace=5c0f… span=9a41…] POST /v1/audit-events -> 202 in 7.2 ms
    ... INFO common.span_summary [trace=5c0f… span=77d2…] process audit 3f0c… -> complete in 12 ms

Client, producer and internal spans (sends, store statements, the SDK's own) are not
printed; the full telemetry goes where the user points it (``OTEL_TRACES_EXPORTER=console``,
``*_TELEMETRY_FILE``, OTLP or Application Insights; see :mod:`common.telemetry`).
"""

import logging

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_MESSAGE_ID,
    MESSAGING_SERVICEBUS_DISPOSITION_STATUS,
)
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode

from common.span_attributes import SERVICEBUS_DEAD_LETTER_REASON

logger = logging.getLogger(__name__)

_SUMMARISED = (SpanKind.SERVER, SpanKind.CONSUMER)


def summary_line(span: ReadableSpan) -> str | None:
    """The line for ``span``, or ``None`` when it is not a request or a delivery.

    Returns:
        ``"<span name> [<message id>] -> <HTTP status or settlement> in <ms> ms"``, with
        the dead-letter reason or error description in parentheses when there is one.
    """
    if span.kind not in _SUMMARISED:
        return None
    attributes = span.attributes or {}
    parts = [span.name]
    message_id = attributes.get(MESSAGING_MESSAGE_ID)
    if message_id is not None:
        parts.append(str(message_id))
    outcome = attributes.get(HTTP_RESPONSE_STATUS_CODE) or attributes.get(
        MESSAGING_SERVICEBUS_DISPOSITION_STATUS
    )
    if outcome is not None:
        parts.append(f"-> {outcome}")
    if span.start_time is not None and span.end_time is not None:
        parts.append(f"in {(span.end_time - span.start_time) / 1e6:.1f} ms")
    detail = attributes.get(SERVICEBUS_DEAD_LETTER_REASON)
    if detail is None and span.status.status_code is StatusCode.ERROR:
        detail = span.status.description
    if detail:
        parts.append(f"({detail})")
    return " ".join(parts)


class SpanSummaryProcessor(SpanProcessor):
    """Logs :func:`summary_line` of each ended request or delivery span at INFO.

    Synchronous (one formatted log line per request, on the thread that ended the span);
    every other span costs one kind check.
    """

    def on_end(self, span: ReadableSpan) -> None:
        line = summary_line(span)
        if line is None or span.context is None or not logger.isEnabledFor(logging.INFO):
            return
        # The span is no longer current once it ends; make it current again for the one
        # record so the log line carries its trace and span ids.
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span.context)))
        try:
            logger.info("%s", line)
        finally:
            otel_context.detach(token)
