"""The AsyncAPI 3.0 document: the two queues, their messages, and Service Bus specifics.

Binding choice: Service Bus speaks AMQP 1.0, and AsyncAPI's ``amqp`` bindings describe
AMQP 0-9-1 (exchanges, routing keys), which does not apply. AsyncAPI reserves ``amqp1``
for AMQP 1.0 and requires its binding objects to be empty
(https://github.com/asyncapi/bindings/tree/master/amqp1), so every channel, operation and
message carries an empty ``amqp1`` binding, and the Service Bus facts (entity kind,
dead-letter sub-queue, duplicate detection, size limit, how message properties are set)
are given in ``x-servicebus`` specification extensions.

Each event version appears as two messages: structured mode (the CloudEvent is the body)
and binary mode (``data`` is the body; attributes are ``cloudEvents:`` application
properties). See :mod:`contracts.servicebus`.
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from contracts.envelope import REQUIRED_ATTRIBUTES
from contracts.examples import example_envelope, example_json
from contracts.registry import AUDIT_QUEUE, NOTIFICATIONS_QUEUE, EventSpec, specs
from contracts.servicebus import (
    CLOUDEVENTS_PROPERTY_PREFIX,
    CONTENT_TYPE,
    EVENT_TYPE_PROPERTY,
    SCHEMA_VERSION_PROPERTY,
    STANDARD_TIER_MAX_MESSAGE_SIZE,
)

ASYNCAPI_VERSION: Final = "3.0.0"
DOCUMENT_VERSION: Final = "1.0.0"
"""``info.version``: bump the minor when an event version is added, the major when one is
removed."""
_REF_TEMPLATE: Final = "#/components/schemas/{model}"
_QUEUE_DESCRIPTIONS: Final = {
    AUDIT_QUEUE: "Audit events, appended by the consumer to the audit store.",
    NOTIFICATIONS_QUEUE: "Notifications, delivered by the consumer by e-mail or webhook.",
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SERVICEBUS_DOCS: Final = "https://learn.microsoft.com/azure/service-bus-messaging/"


def message_id(spec: EventSpec, *, binary: bool = False) -> str:
    """Component name of a message, e.g. ``auditRecordedV1`` / ``auditRecordedV1Binary``."""
    words = spec.event_type.split(".")[-2:]
    name = words[0] + "".join(word.title() for word in words[1:])
    return f"{name}V{spec.version}{'Binary' if binary else ''}"


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document for every supported event type and version."""
    all_specs = specs()
    schemas = _component_schemas(all_specs)
    messages: dict[str, Any] = {}
    for spec in all_specs:
        messages[message_id(spec)] = _structured_message(spec)
        messages[message_id(spec, binary=True)] = _binary_message(spec, schemas)
    queues = sorted({spec.queue for spec in all_specs})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "servicebus-events",
            "version": DOCUMENT_VERSION,
            "description": (
                "Audit and notification events that the producer (FastAPI) publishes to Azure "
                "Service Bus queues and the consumer processes. Every message is a CloudEvents "
                "1.0 event; `type` and `schemaversion` identify its schema. Versioning rules: "
                "docs/contracts.md."
            ),
            "license": {"name": "MIT"},
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": _servers(),
        "channels": {queue: _channel(queue, all_specs) for queue in queues},
        "operations": _operations(queues, all_specs),
        "components": {"messages": messages, "schemas": schemas},
    }


def _servers() -> dict[str, Any]:
    return {
        "azure": {
            "host": "{namespace}.servicebus.windows.net",
            "protocol": "amqps",
            "protocolVersion": "1.0",
            "description": (
                "An Azure Service Bus namespace (AMQP 1.0 over TLS, port 5671). Clients "
                "authenticate with Microsoft Entra ID (managed identity) or a shared access "
                "signature."
            ),
            "variables": {"namespace": {"description": "Service Bus namespace name."}},
            "bindings": {"amqp1": {}},
        },
        "emulator": {
            "host": "localhost:5672",
            "protocol": "amqp",
            "protocolVersion": "1.0",
            "description": "The project's local Service Bus emulator (`python -m emulator`).",
            "bindings": {"amqp1": {}},
        },
    }


def _channel(queue: str, all_specs: Iterable[EventSpec]) -> dict[str, Any]:
    ids = [
        message_id(spec, binary=binary)
        for spec in all_specs
        if spec.queue == queue
        for binary in (False, True)
    ]
    return {
        "address": queue,
        "title": f"{queue} queue",
        "description": _QUEUE_DESCRIPTIONS.get(queue, f"The {queue} queue."),
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in ids},
        "bindings": {"amqp1": {}},
        "x-servicebus": {
            "entityType": "queue",
            "deadLetterQueue": f"{queue}/$deadletterqueue",
            "requiresDuplicateDetection": True,
            "maxMessageSizeBytes": STANDARD_TIER_MAX_MESSAGE_SIZE,
            "receiveMode": "peekLock",
            "documentation": f"{_SERVICEBUS_DOCS}service-bus-queues-topics-subscriptions",
        },
    }


def _operations(queues: Iterable[str], all_specs: Iterable[EventSpec]) -> dict[str, Any]:
    spec_list = list(all_specs)
    operations: dict[str, Any] = {}
    for queue in queues:
        refs = [
            {"$ref": f"#/channels/{queue}/messages/{message_id(spec, binary=binary)}"}
            for spec in spec_list
            if spec.queue == queue
            for binary in (False, True)
        ]
        title = queue.title()
        operations[f"send{title}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{queue}"},
            "summary": f"The producer sends events to the {queue} queue.",
            "messages": refs,
            "bindings": {"amqp1": {}},
        }
        operations[f"receive{title}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{queue}"},
            "summary": (
                f"The consumer receives from the {queue} queue in peek-lock mode; messages "
                "that can never be processed are dead-lettered with a reason."
            ),
            "messages": refs,
            "bindings": {"amqp1": {}},
        }
    return operations


def _component_schemas(all_specs: Iterable[EventSpec]) -> dict[str, Any]:
    models = [(spec.envelope, "validation") for spec in all_specs]
    _, definitions = models_json_schema(models, ref_template=_REF_TEMPLATE)  # type: ignore[arg-type]
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return schemas


def _envelope_schema_name(spec: EventSpec) -> str:
    return spec.envelope.__name__


def _routing_headers(spec: EventSpec) -> dict[str, Any]:
    return {
        EVENT_TYPE_PROPERTY: {"type": "string", "const": spec.event_type},
        SCHEMA_VERSION_PROPERTY: {"type": "string", "const": spec.version},
    }


def _servicebus_properties(spec: EventSpec) -> dict[str, Any]:
    mapping = {
        "messageId": "CloudEvents id",
        "subject": "CloudEvents type",
        "correlationId": "CloudEvents correlationid (if set)",
        "sessionId": "optional, chosen by the sender for ordered processing",
        "timeToLive": "optional, chosen by the sender",
    }
    if spec.queue == NOTIFICATIONS_QUEUE:
        mapping["scheduledEnqueueTimeUtc"] = "data.deliver_at (if set)"
    return {
        "properties": mapping,
        "documentation": f"{_SERVICEBUS_DOCS}service-bus-messages-payloads",
    }


def _structured_message(spec: EventSpec) -> dict[str, Any]:
    return {
        "name": message_id(spec),
        "title": f"{spec.title} (v{spec.version}, structured mode)",
        "summary": f"`{spec.event_type}` version {spec.version}; the body is the whole CloudEvent.",
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "description": "AMQP application properties.",
            "properties": _routing_headers(spec),
        },
        "payload": {"$ref": _REF_TEMPLATE.format(model=_envelope_schema_name(spec))},
        "correlationId": {
            "description": "Request or business-flow id; also the Service Bus correlation id.",
            "location": "$message.payload#/correlationid",
        },
        "examples": [{"name": f"{message_id(spec)}Example", "payload": example_json(spec)}],
        "bindings": {"amqp1": {}},
        "x-servicebus": _servicebus_properties(spec),
    }


def _binary_example_headers(spec: EventSpec, example: dict[str, Any]) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for key, value in example.items():
        if key == "time":
            value = (example_envelope(spec).time - _EPOCH) // timedelta(milliseconds=1)
        if key not in ("data", "datacontenttype"):
            headers[f"{CLOUDEVENTS_PROPERTY_PREFIX}{key}"] = value
    headers.update({EVENT_TYPE_PROPERTY: spec.event_type, SCHEMA_VERSION_PROPERTY: spec.version})
    return headers


def _binary_message(spec: EventSpec, schemas: dict[str, Any]) -> dict[str, Any]:
    envelope = schemas[_envelope_schema_name(spec)]
    data_ref = envelope["properties"]["data"]["$ref"]
    headers: dict[str, Any] = {}
    for name, schema in envelope["properties"].items():
        if name in ("data", "datacontenttype"):
            continue
        if name == "time":
            schema = {
                "type": "integer",
                "description": "AMQP timestamp: milliseconds since the Unix epoch, UTC.",
            }
        headers[f"{CLOUDEVENTS_PROPERTY_PREFIX}{name}"] = schema
    headers.update(_routing_headers(spec))
    required = [f"{CLOUDEVENTS_PROPERTY_PREFIX}{name}" for name in REQUIRED_ATTRIBUTES]
    example = example_json(spec)
    return {
        "name": message_id(spec, binary=True),
        "title": f"{spec.title} (v{spec.version}, binary mode)",
        "summary": (
            f"`{spec.event_type}` version {spec.version}; the body is `data`, the CloudEvents "
            "attributes are `cloudEvents:` application properties (readers also accept "
            "`cloudEvents_`)."
        ),
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "description": "AMQP application properties.",
            "properties": headers,
            "required": required,
        },
        "payload": {"$ref": data_ref},
        "correlationId": {
            "description": "Request or business-flow id; also the Service Bus correlation id.",
            "location": f"$message.header#/{CLOUDEVENTS_PROPERTY_PREFIX}correlationid",
        },
        "examples": [
            {
                "name": f"{message_id(spec, binary=True)}Example",
                "headers": _binary_example_headers(spec, example),
                "payload": example["data"],
            }
        ],
        "bindings": {"amqp1": {}},
        "x-servicebus": _servicebus_properties(spec),
    }
