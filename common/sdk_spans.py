"""The Azure SDK's spans, minus its per-message duplicate of our ``create`` span.

With tracing on, azure-servicebus opens a ``ServiceBus.message`` PRODUCER span for every
message it adds to a batch or sends, only to stamp ``traceparent`` / ``Diagnostic-Id`` on
it where those are absent
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-end-to-end-tracing).
Our own ``create <queue>`` span (:mod:`producer.telemetry`) is the per-message span of the
OpenTelemetry messaging conventions, and its context is already on the message
(:func:`common.messaging.trace_properties`), so the SDK's span was a second span per
message that nothing pointed to, a large share of the producer's spans and of its export
cost (docs/benchmarks/findings.md §14.23).

:class:`ServiceBusSdkSpan` is the azure-core OpenTelemetry span type with that one span
replaced by the current span (nothing recorded); the SDK's send, receive and settlement
spans are untouched. A message that carries no context of ours still gets ``traceparent``
and ``Diagnostic-Id``: those of the span current where the SDK adds it to a batch.
"""

from typing import Any

from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span

PER_MESSAGE_SPAN = "ServiceBus.message"
"""Name of azure-servicebus's per-message span (``azure.servicebus._common.tracing``)."""


class ServiceBusSdkSpan(OpenTelemetrySpan):
    """``OpenTelemetrySpan`` that records nothing for :data:`PER_MESSAGE_SPAN`.

    Install with ``azure.core.settings.settings.tracing_implementation = ServiceBusSdkSpan``
    (:func:`common.telemetry.enable_azure_sdk_tracing` does).
    """

    def __init__(self, span: Span | None = None, name: str | None = "span", **kwargs: Any) -> None:
        if span is None and name == PER_MESSAGE_SPAN:
            # A non-recording stand-in with the current span's context: entering and
            # ending it cost nothing, and ``to_header()`` still gives the SDK a context.
            span = NonRecordingSpan(trace.get_current_span().get_span_context())
        super().__init__(span, name, **kwargs)
