"""Consumer spans and metrics (OpenTelemetry messaging semantic conventions).

Spans: one ``process <queue>`` span of kind CONSUMER per delivery, whose parent is the
context the producer put on the message (``traceparent``, else ``Diagnostic-Id``), so
HTTP request, publish and processing form one trace; delayed retries keep the original
properties and therefore join the same trace. Store and webhook work appears as child
spans through the SQLAlchemy and httpx instrumentations; SMTP gets its own span.

Metrics (``messaging.*`` names from the conventions where one exists):

* ``messaging.process.duration`` (histogram, s) by queue and outcome;
* ``messaging.client.consumed.messages`` (counter) by queue;
* ``servicebus_events.consumer.outcomes`` (counter) by queue, outcome and
  dead-letter reason (completed, duplicate, retry_scheduled, immediate_retry,
  dead_lettered, abandoned);
* ``servicebus_events.event.end_to_end.duration`` (histogram, s): event ``time``
  (acceptance) to handler completion;
* ``servicebus_events.consumer.lock.renewals`` / ``...locks.lost`` (counters);
* ``servicebus_events.dlq.depth`` (gauge) by queue: messages in its dead-letter queue,
  counted by peeking every ``CONSUMER_DLQ_DEPTH_INTERVAL`` seconds up to
  ``CONSUMER_DLQ_DEPTH_LIMIT`` (a lower bound past that). Peeking needs only the Listen
  right the consumer already has; the runtime-properties count needs Manage.

Counters are observed from :class:`consumer.runtime.stats.WorkerStats`, the one record of
outcomes the ``/status`` page also shows, so the two never disagree.
"""

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from types import TracebackType
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_CONVERSATION_ID,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_NAME,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SERVICEBUS_DISPOSITION_STATUS,
    MESSAGING_SERVICEBUS_MESSAGE_DELIVERY_COUNT,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
    MessagingServicebusDispositionStatusValues,
)
from opentelemetry.semconv._incubating.metrics.messaging_metrics import (
    MESSAGING_CLIENT_CONSUMED_MESSAGES,
    MESSAGING_PROCESS_DURATION,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from common.messaging import context_from_properties
from common.sdk_spans import SETTLEMENT_SPANS, recorded_here
from common.span_attributes import EVENT_TYPE, OUTCOME, SERVICEBUS, SERVICEBUS_DEAD_LETTER_REASON
from consumer.runtime.stats import QueueStats, WorkerStats

tracer = trace.get_tracer("servicebus_events.consumer")
meter = metrics.get_meter("servicebus_events.consumer")

_PROCESS: str = MessagingOperationTypeValues.PROCESS.value
_COMPLETE: str = MessagingServicebusDispositionStatusValues.COMPLETE.value

# The conventions' create_* helpers would change each instrument's description on the wire.
_process_duration = meter.create_histogram(
    MESSAGING_PROCESS_DURATION, unit="s", description="Time to process one delivery"
)
_end_to_end = meter.create_histogram(
    "servicebus_events.event.end_to_end.duration",
    unit="s",
    description="From event acceptance by the producer to handler completion",
)


class ProcessSpan:
    """The CONSUMER span of one delivery, parented on the producer's context.

    Creating it starts the span; entering makes it current (so handler logs and child
    spans carry its trace); leaving ends it, with status ``ERROR`` if an exception
    escapes. Equivalent to ``tracer.start_as_current_span(...,
    record_exception=False, set_status_on_exception=True)``, without the two generator
    context managers it enters per message (docs/benchmarks/findings.md §14.15).

    Args:
        queue: Queue name.
        message: The received message (its application properties carry the trace
            context; ``message_id``, ``delivery_count`` and ``correlation_id`` become
            attributes).
    """

    __slots__ = ("_token", "span")

    def __init__(self, queue: str, message: ServiceBusReceivedMessage) -> None:
        attributes = {
            **_base_attributes(queue),
            MESSAGING_MESSAGE_ID: str(message.message_id),
            MESSAGING_SERVICEBUS_MESSAGE_DELIVERY_COUNT: message.delivery_count or 0,
        }
        if message.correlation_id:
            attributes[MESSAGING_MESSAGE_CONVERSATION_ID] = str(message.correlation_id)
        self.span: Span = tracer.start_span(
            _span_name(queue),
            context=context_from_properties(message.application_properties),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=True,
        )
        self._token: object = None

    def __enter__(self) -> Span:
        # Into the current context, as ``use_span`` does, marked so that the SDK's
        # settlement span, which this span records, is left out (common.sdk_spans).
        context = trace.set_span_in_context(self.span, recorded_here(SETTLEMENT_SPANS))
        self._token = otel_context.attach(context)
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            # As ``use_span`` with set_status_on_exception=True: errors, not BaseExceptions
            # such as CancelledError.
            if isinstance(exc, Exception) and self.span.is_recording():
                self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            self.span.end()


def process_span(queue: str, message: ServiceBusReceivedMessage) -> ProcessSpan:
    """The CONSUMER span of one delivery, parented on the producer's context.

    Use as ``with process_span(queue, message) as span: ...``; see :class:`ProcessSpan`.
    """
    return ProcessSpan(queue, message)


@cache
def _span_name(queue: str) -> str:
    return f"process {queue}"


@cache
def _base_attributes(queue: str) -> dict[str, str | int]:
    """The attributes every process span of ``queue`` shares (copied, never mutated)."""
    return {
        MESSAGING_SYSTEM: SERVICEBUS,
        MESSAGING_DESTINATION_NAME: queue,
        MESSAGING_OPERATION_NAME: _PROCESS,
        MESSAGING_OPERATION_TYPE: _PROCESS,
    }


@cache
def _outcome_attributes(queue: str, outcome: str, reason: str | None) -> dict[str, str]:
    attributes = {MESSAGING_DESTINATION_NAME: queue, OUTCOME: outcome}
    if reason:
        attributes[ERROR_TYPE] = reason
    return attributes


def record_processed(
    span: Span, queue: str, outcome: str, started: float, reason: str | None = None
) -> None:
    """Close out a delivery: outcome on the span, and its processing time.

    Args:
        span: The delivery's process span.
        queue: Queue name.
        outcome: ``complete``, ``dead_letter``, ``retry_scheduled``, ``abandon`` or
            ``lock_lost``.
        started: ``time.monotonic()`` when processing began.
        reason: Dead-letter reason, when dead-lettered.
    """
    span.set_attribute(MESSAGING_SERVICEBUS_DISPOSITION_STATUS, outcome)
    if reason:
        span.set_attribute(SERVICEBUS_DEAD_LETTER_REASON, reason)
        span.set_status(Status(StatusCode.ERROR, reason))
    elif outcome != _COMPLETE:
        span.set_status(Status(StatusCode.ERROR, outcome))
    attributes = _outcome_attributes(queue, outcome, reason)
    _process_duration.record(time.monotonic() - started, attributes)


@cache
def _end_to_end_attributes(queue: str, event_type: str) -> dict[str, str]:
    return {MESSAGING_DESTINATION_NAME: queue, EVENT_TYPE: event_type}


def record_end_to_end(queue: str, event_type: str, accepted_at: datetime) -> None:
    """Record the time from event acceptance (envelope ``time``, UTC) to now."""
    seconds = (datetime.now(UTC) - accepted_at).total_seconds()
    _end_to_end.record(max(seconds, 0.0), _end_to_end_attributes(queue, event_type))


_observed: list[WorkerStats] = []


def observe_stats(stats: WorkerStats) -> None:
    """Publish ``stats`` through the observable counters.

    The instruments are created once per process (a second registration under the same
    name would be ignored by the SDK); each worker's stats are added to what they report.
    """
    if not _observed:
        _create_observable_counters()
    _observed.append(stats)


def _queues() -> Iterator[tuple[str, QueueStats]]:
    for stats in _observed:
        yield from stats.queues.items()


def _consumed(_: CallbackOptions) -> Iterable[Observation]:
    for queue, s in _queues():
        yield Observation(
            s.received, {MESSAGING_DESTINATION_NAME: queue, MESSAGING_SYSTEM: SERVICEBUS}
        )


def _outcomes(_: CallbackOptions) -> Iterable[Observation]:
    for queue, s in _queues():
        plain = {
            # A delayed retry completes the original too; count it once, as a retry.
            "completed": max(s.completed - s.duplicates - s.retries_scheduled, 0),
            "duplicate": s.duplicates,
            "retry_scheduled": s.retries_scheduled,
            "immediate_retry": s.immediate_retries,
            "abandoned": s.abandoned,
        }
        for outcome, value in plain.items():
            yield Observation(value, {MESSAGING_DESTINATION_NAME: queue, OUTCOME: outcome})
        for reason, value in s.dead_lettered.items():
            yield Observation(
                value,
                {MESSAGING_DESTINATION_NAME: queue, OUTCOME: "dead_lettered", ERROR_TYPE: reason},
            )


def _renewals(_: CallbackOptions) -> Iterable[Observation]:
    for queue, s in _queues():
        yield Observation(s.lock_renewals, {MESSAGING_DESTINATION_NAME: queue})


def _locks_lost(_: CallbackOptions) -> Iterable[Observation]:
    for queue, s in _queues():
        yield Observation(s.locks_lost, {MESSAGING_DESTINATION_NAME: queue})


def _create_observable_counters() -> None:
    meter.create_observable_counter(
        MESSAGING_CLIENT_CONSUMED_MESSAGES, [_consumed], unit="{message}"
    )
    meter.create_observable_counter(
        "servicebus_events.consumer.outcomes", [_outcomes], unit="{message}"
    )
    meter.create_observable_counter(
        "servicebus_events.consumer.lock.renewals", [_renewals], unit="{renewal}"
    )
    meter.create_observable_counter(
        "servicebus_events.consumer.locks.lost", [_locks_lost], unit="{lock}"
    )


_dlq_depth: dict[str, int] = {}


def _observe_dlq_depth(_: CallbackOptions) -> Iterable[Observation]:
    for queue, depth in _dlq_depth.items():
        yield Observation(depth, {MESSAGING_DESTINATION_NAME: queue})


meter.create_observable_gauge("servicebus_events.dlq.depth", [_observe_dlq_depth], unit="{message}")


async def measure_dlq_depth(client: Any, queues: Sequence[str], limit: int) -> dict[str, int]:
    """Count each queue's dead letters by peeking (at most ``limit``) and publish them.

    Returns:
        Queue name -> dead letters counted.

    Raises:
        consumer.dlq.DlqError: a queue cannot be read.
    """
    from consumer.dlq import list_dead_letters

    for queue in queues:
        _dlq_depth[queue] = len(await list_dead_letters(client, queue, limit=limit))
    return {queue: _dlq_depth[queue] for queue in queues}
