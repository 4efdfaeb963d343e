"""Reading received messages and re-sending copies of them (delayed retries, DLQ replay).

The SDK hands application property keys, and string values, back as ``bytes``; these
helpers give them back as ``str`` so a copy keeps them as AMQP strings.
"""

from collections.abc import Collection, Mapping
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage

from common.messaging import TRACE_KEYS

DEAD_LETTER_PROPERTIES = ("DeadLetterReason", "DeadLetterErrorDescription")


def text(value: object) -> object:
    """``bytes`` decoded as UTF-8 (replacing errors); anything else unchanged."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def text_properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties with ``str`` keys and string values."""
    return {
        str(text(key)): text(value) for key, value in (message.application_properties or {}).items()
    }


def copy_for_resend(
    message: ServiceBusReceivedMessage,
    *,
    message_id: str,
    body: bytes | str,
    drop: Collection[str],
    add: Mapping[str, Any],
) -> ServiceBusMessage:
    """A new message with ``message``'s headers and properties, a new id and ``body``.

    Properties named in ``drop`` are left out and ``add`` is applied on top. Trace
    context keys stay ``bytes``: the SDK's send tracing only adds them where absent, so
    the copy stays in the original event's trace.
    """
    properties: dict[str | bytes, Any] = {}
    for name, value in text_properties(message).items():
        if name not in drop:
            properties[TRACE_KEYS.get(name, name)] = value
    properties.update(add)
    return ServiceBusMessage(
        body,
        message_id=message_id,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject,
        session_id=message.session_id,
        to=message.to,
        reply_to=message.reply_to,
        application_properties=properties,
    )
