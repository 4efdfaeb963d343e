"""The Azure SDK's spans, minus those that repeat a span of ours message by message.

With tracing on, azure-servicebus opens

* a ``ServiceBus.message`` PRODUCER span for every message it adds to a batch or sends,
  only to stamp ``traceparent`` / ``Diagnostic-Id`` on it where those are absent
  (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-end-to-end-tracing).
  Our own ``create <queue>`` span (:mod:`producer.telemetry`) is the per-message span of
  the OpenTelemetry messaging conventions, and its context is already on the message
  (:func:`common.messaging.trace_properties`), so the SDK's span was a second span per
  message that nothing pointed to (docs/benchmarks/findings.md §14.23);
* a ``ServiceBus.complete`` / ``abandon`` / ``dead-letter`` / ``defer`` CLIENT span for every
  settlement. Inside the consumer's ``process <queue>`` span, which records the settlement
  as ``messaging.servicebus.disposition_status`` (and a failed settlement as an exception
  event, :func:`consumer.runtime.settlement.settled`), that was a second span per message
  whose creation and export cost the consumer about a tenth of its CPU with telemetry on
  (docs/benchmarks/findings.md §16);
* a ``ServiceBus.send`` / ``ServiceBus.schedule`` CLIENT span for every send call, which
  inside our own ``send <queue>`` / ``schedule <queue>`` span
  (:func:`producer.telemetry.send_span`, same call, same links) says nothing more.

A span of ours that records what the SDK's would names those SDK spans in its context
(:func:`recorded_here`); outside one (the DLQ tool, a library user's own sender or
receiver) the SDK's spans are kept.

:class:`ServiceBusSdkSpan` is the azure-core OpenTelemetry span type with those spans
replaced by the current span (nothing recorded); the SDK's send and receive spans are
untouched. A message that carries no context of ours still gets ``traceparent`` and
``Diagnostic-Id``: those of the span current where the SDK adds it to a batch.
"""

from typing import Any

from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span

PER_MESSAGE_SPAN = "ServiceBus.message"
"""Name of azure-servicebus's per-message span (``azure.servicebus._common.tracing``)."""

SETTLEMENT_SPANS = frozenset(
    f"ServiceBus.{operation}" for operation in ("complete", "abandon", "dead-letter", "defer")
)
"""Names of azure-servicebus's settlement spans (``settle_trace_context_manager``, named
after ``azure.servicebus._common.constants.MESSAGE_*``)."""

SEND_SPANS = frozenset({"ServiceBus.send", "ServiceBus.schedule"})
"""Names of azure-servicebus's send and schedule spans (``SPAN_NAME_SEND`` /
``SPAN_NAME_SCHEDULE`` in ``azure.servicebus._common.tracing``)."""

_RECORDED_HERE = otel_context.create_key("servicebus_events.sdk_spans_recorded")


def recorded_here(names: frozenset[str], context: Context | None = None) -> Context:
    """``context`` (default: the current one) marked: a span of ours current in it records
    what the SDK spans ``names`` would, so :class:`ServiceBusSdkSpan` leaves them out."""
    return otel_context.set_value(_RECORDED_HERE, names, context)


class ServiceBusSdkSpan(OpenTelemetrySpan):
    """``OpenTelemetrySpan`` that records nothing for :data:`PER_MESSAGE_SPAN`, nor for
    the SDK spans that a span of ours current here records (:func:`recorded_here`).

    Install with ``azure.core.settings.settings.tracing_implementation = ServiceBusSdkSpan``
    (:func:`common.telemetry.enable_azure_sdk_tracing` does).
    """

    def __init__(self, span: Span | None = None, name: str | None = "span", **kwargs: Any) -> None:
        recorded = otel_context.get_value(_RECORDED_HERE)
        if span is None and (
            name == PER_MESSAGE_SPAN or (isinstance(recorded, frozenset) and name in recorded)
        ):
            # A non-recording stand-in with the current span's context: entering and
            # ending it cost nothing, and ``to_header()`` still gives the SDK a context.
            span = NonRecordingSpan(trace.get_current_span().get_span_context())
        super().__init__(span, name, **kwargs)
