"""Trace context on Service Bus messages.

Context travels in application properties ``traceparent`` / ``tracestate`` (W3C Trace
Context) and ``Diagnostic-Id`` (the same traceparent value, which .NET and Azure Functions
consumers read), as the Azure SDKs do:
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-end-to-end-tracing

Span attribute names come from ``opentelemetry-semantic-conventions``; the few the
conventions do not define are in :mod:`common.span_attributes`.
"""

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"

TRACE_KEYS: dict[str, bytes] = {
    name: name.encode() for name in (TRACEPARENT, TRACESTATE, DIAGNOSTIC_ID)
}
"""Trace property names as the SDK encodes them (``bytes``)."""
_TRACE_NAMES = frozenset(name.lower() for name in TRACE_KEYS)

_W3C = TraceContextTextMapPropagator()


def current_trace_headers(context: otel_context.Context | None = None) -> dict[str, str]:
    """W3C headers of ``context`` (default: the current one); empty when not recording."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return carrier


def trace_properties(headers: Mapping[str, str]) -> dict[str | bytes, str]:
    """Application properties to put on a message for stored W3C ``headers``.

    Keys are ``bytes``, as the SDK writes them: its own send tracing only *adds* these
    properties where absent (``setdefault`` on ``b"traceparent"``), so ours -- the
    event's creation context -- must use the same keys to win.
    """
    properties: dict[str | bytes, str] = {}
    if traceparent := headers.get(TRACEPARENT):
        properties[TRACE_KEYS[TRACEPARENT]] = traceparent
        properties[TRACE_KEYS[DIAGNOSTIC_ID]] = traceparent
        if tracestate := headers.get(TRACESTATE):
            properties[TRACE_KEYS[TRACESTATE]] = tracestate
    return properties


def context_from_properties(
    application_properties: Mapping[Any, Any] | None,
) -> otel_context.Context:
    """Extract the sender's context from received application properties.

    Keys and values may be ``bytes`` (as the SDK returns them). ``traceparent`` wins over
    ``Diagnostic-Id``; a message without either yields an empty context.
    """
    carrier: dict[str, str] = {}
    for key, value in (application_properties or {}).items():
        name = (key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)).lower()
        if name in _TRACE_NAMES:  # only these are decoded: this runs for every message
            carrier[name] = value.decode() if isinstance(value, bytes) else str(value)
    if not carrier:
        return otel_context.Context()
    if TRACEPARENT not in carrier and DIAGNOSTIC_ID.lower() in carrier:
        carrier[TRACEPARENT] = carrier[DIAGNOSTIC_ID.lower()]
    return _W3C.extract(carrier)


__all__ = [
    "DIAGNOSTIC_ID",
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_KEYS",
    "context_from_properties",
    "current_trace_headers",
    "trace_properties",
]
