"""Producer spans and metrics (OpenTelemetry messaging semantic conventions).

The outbox separates accepting an event from sending it, so context propagation is
explicit: at acceptance a ``create <queue>`` PRODUCER span is started as a child of the
HTTP server span and its W3C context is stored with the outbox row; at publish time that
context goes onto the message (``traceparent``, ``tracestate``, ``Diagnostic-Id``) and the
``send <queue>`` CLIENT span links to every message it carries. The consumer's process span
is then a child of the create span: one trace from HTTP request to handler, however late
the send happens. (The Azure SDK's own send span cannot do this: it only sees the relay's
context at send time.)

Metrics:

* ``messaging.client.sent.messages`` (counter) by queue, operation, ``error.type``;
* ``messaging.client.operation.duration`` (histogram, s) of each send/schedule call;
* ``servicebus_events.outbox.backlog`` (gauge, rows waiting) and
  ``servicebus_events.outbox.oldest_pending.age`` (gauge, s), refreshed by the relay.
"""

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache

from azure.servicebus import ServiceBusMessage
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_BATCH_MESSAGE_COUNT,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_CLIENT_OPERATION_DURATION,
    MESSAGING_CLIENT_SENT_MESSAGES,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import Link, SpanKind

from common.messaging import context_from_properties, current_trace_headers, trace_properties
from common.sdk_spans import SEND_SPANS, recorded_here
from common.span_attributes import EVENT_TYPE, SERVICEBUS

tracer = trace.get_tracer("servicebus_events.producer")
_UNCONFIGURED = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
meter = metrics.get_meter("servicebus_events.producer")

_CREATE: str = MessagingOperationTypeValues.CREATE.value
_SEND: str = MessagingOperationTypeValues.SEND.value

# The conventions' create_* helpers would change each instrument's description on the wire.
_sent = meter.create_counter(
    MESSAGING_CLIENT_SENT_MESSAGES, unit="{message}", description="Messages sent"
)
_operation_duration = meter.create_histogram(
    MESSAGING_CLIENT_OPERATION_DURATION, unit="s", description="Send and schedule calls"
)
_backlog: dict[str, float] = {"count": 0.0, "oldest_age": 0.0}


def creation_context(queue: str, event_id: str, event_type: str) -> str | None:
    """Start and end the ``create`` span of one event; return its W3C context as JSON.

    Returns ``None`` when tracing is off (nothing to store).
    """
    if isinstance(trace.get_tracer_provider(), _UNCONFIGURED):
        # No provider (exporter "none"): the span would be a no-op and carry no context;
        # skip building it on every accepted event.
        return None
    # start_span and end rather than start_as_current_span: nothing runs inside the span,
    # so making it current (two generator context managers) was pure cost on every event.
    span = tracer.start_span(
        _create_name(queue),
        kind=SpanKind.PRODUCER,
        attributes={
            **_create_attributes(queue),
            MESSAGING_MESSAGE_ID: event_id,
            EVENT_TYPE: event_type,
        },
    )
    headers = current_trace_headers(trace.set_span_in_context(span))
    span.end()
    return json.dumps(headers) if headers else None


@cache
def _create_name(queue: str) -> str:
    return f"create {queue}"


@cache
def _create_attributes(queue: str) -> dict[str, str]:
    """The attributes every create span of ``queue`` shares (copied, never mutated)."""
    return {
        MESSAGING_SYSTEM: SERVICEBUS,
        MESSAGING_DESTINATION_NAME: queue,
        MESSAGING_OPERATION_NAME: _CREATE,
        MESSAGING_OPERATION_TYPE: _CREATE,
    }


def attach_context(message: ServiceBusMessage, trace_context: str | None) -> None:
    """Put the stored creation context on ``message`` (no-op without one)."""
    if not trace_context:
        return
    properties = dict(message.application_properties or {})
    properties.update(trace_properties(json.loads(trace_context)))
    message.application_properties = properties


def _links(contexts: Iterable[str | None]) -> list[Link]:
    links = []
    for stored in contexts:
        if not stored:
            continue
        span_context = trace.get_current_span(
            context_from_properties(json.loads(stored))
        ).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    return links


@contextmanager
def send_span(queue: str, operation: str, contexts: Sequence[str | None]) -> Iterator[None]:
    """A ``send``/``schedule`` CLIENT span linked to each message's creation context.

    Records the call's duration and the messages sent (with ``error.type`` on failure).
    """
    attributes: dict[str, str | int] = {
        MESSAGING_SYSTEM: SERVICEBUS,
        MESSAGING_DESTINATION_NAME: queue,
        MESSAGING_OPERATION_NAME: operation,
        MESSAGING_OPERATION_TYPE: _SEND,
        MESSAGING_BATCH_MESSAGE_COUNT: len(contexts),
    }
    metric_attributes: dict[str, str] = {
        MESSAGING_SYSTEM: SERVICEBUS,
        MESSAGING_DESTINATION_NAME: queue,
        MESSAGING_OPERATION_NAME: operation,
    }
    started = time.monotonic()
    with tracer.start_as_current_span(
        f"{operation} {queue}", kind=SpanKind.CLIENT, attributes=attributes, links=_links(contexts)
    ):
        # This span is the send: the SDK's own send/schedule span is left out inside it.
        token = otel_context.attach(recorded_here(SEND_SPANS))
        try:
            yield
        except BaseException as exc:
            metric_attributes[ERROR_TYPE] = type(exc).__qualname__
            raise
        finally:
            otel_context.detach(token)
            _operation_duration.record(time.monotonic() - started, metric_attributes)
            _sent.add(len(contexts), metric_attributes)


def set_backlog(count: int, oldest_accepted_at: datetime | None) -> None:
    """Update the outbox gauges (rows waiting, age in seconds of the oldest)."""
    _backlog["count"] = float(count)
    if oldest_accepted_at is None:
        _backlog["oldest_age"] = 0.0
    else:
        _backlog["oldest_age"] = max((datetime.now(UTC) - oldest_accepted_at).total_seconds(), 0)


def _observe(key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(_backlog[key])

    return callback


meter.create_observable_gauge(
    "servicebus_events.outbox.backlog", [_observe("count")], unit="{event}"
)
meter.create_observable_gauge(
    "servicebus_events.outbox.oldest_pending.age", [_observe("oldest_age")], unit="s"
)
