"""One fixed, realistic example message per event type and version.

Used in the AsyncAPI document and the tests; fixed ids and times keep generated artefacts
reproducible. Each example must validate against its JSON Schema (a test checks it).
"""

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from contracts.envelope import AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE, EventEnvelope
from contracts.parsing import validate_envelope
from contracts.registry import EventSpec

_EXAMPLES: Final[Mapping[tuple[str, str], Mapping[str, Any]]] = MappingProxyType(
    {
        (AUDIT_EVENT_TYPE, "1"): {
            "specversion": "1.0",
            "id": "5b7c1f0e-3d4a-4c59-9a0e-2f1d7c8b6a41",
            "source": "/producer",
            "type": AUDIT_EVENT_TYPE,
            "time": "2026-11-21T09:30:00.125Z",
            "subject": "invoice/INV-1042",
            "datacontenttype": "application/json",
            "correlationid": "req-7f3a",
            "schemaversion": "1",
            "data": {
                "actor": {"id": "u-42", "type": "user", "display_name": "Grace Hopper"},
                "action": "invoice.approve",
                "resource": {"type": "invoice", "id": "INV-1042"},
                "outcome": "success",
                "occurred_at": "2026-11-21T09:29:59.870Z",
                "tenant_id": "acme",
                "source_ip": "2001:db8::1",
                "user_agent": "Mozilla/5.0",
                "changes": [{"field": "status", "before": "submitted", "after": "approved"}],
                "details": {"amount_cents": 129900},
            },
        },
        (NOTIFICATION_EVENT_TYPE, "1"): {
            "specversion": "1.0",
            "id": "0c4e9b1a-8f2d-4e7b-b5a3-6d9e1f2c3b4a",
            "source": "/producer",
            "type": NOTIFICATION_EVENT_TYPE,
            "time": "2026-11-21T09:30:00.250Z",
            "datacontenttype": "application/json",
            "correlationid": "req-7f3a",
            "schemaversion": "1",
            "data": {
                "channel": "email",
                "recipient": "grace@example.com",
                "subject": "Invoice INV-1042 approved",
                "template": "invoice-approved",
                "parameters": {"invoice": "INV-1042"},
                "locale": "en-GB",
                "priority": "high",
                "deliver_at": "2026-11-21T10:00:00Z",
                "idempotency_key": "invoice-approved/INV-1042",
            },
        },
    }
)


def example_json(spec: EventSpec) -> dict[str, Any]:
    """The example message of ``spec`` as JSON-compatible data (structured mode).

    Raises:
        KeyError: no example for this type and version (every registered one needs one).
    """
    return copy.deepcopy(dict(_EXAMPLES[spec.key]))


def example_envelope(spec: EventSpec) -> EventEnvelope:
    """The example message of ``spec``, validated as a reader would."""
    return validate_envelope(example_json(spec))
