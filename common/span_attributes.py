"""Span and metric attribute names this project adds beside the OpenTelemetry conventions.

Every name the messaging semantic conventions define is taken from
``opentelemetry-semantic-conventions`` where it is used
(``opentelemetry.semconv._incubating.attributes.messaging_attributes``,
``opentelemetry.semconv.attributes.error_attributes``, ...). The conventions keep the
messaging names in their incubating modules until they are declared stable
(https://opentelemetry.io/docs/specs/semconv/messaging/azure-messaging/); the names and
values on the wire are the same either way. Only names the conventions lack live here.
"""

from typing import Final

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MessagingSystemValues,
)

SERVICEBUS: Final[str] = MessagingSystemValues.SERVICEBUS.value
"""``messaging.system`` value for Azure Service Bus (``servicebus``)."""

SERVICEBUS_DEAD_LETTER_REASON: Final = "messaging.servicebus.dead_letter_reason"
"""Dead-letter reason of a delivery the consumer dead-lettered (span attribute).

Named after the conventions' ``messaging.servicebus.*`` attributes, which have no
dead-letter reason; the value is the Service Bus ``DeadLetterReason`` property.
"""

EVENT_TYPE: Final = "event.type"
"""CloudEvents ``type`` of the event a span or metric point is about, e.g.
``io.servicebus-events.audit.recorded``."""

OUTCOME: Final = "outcome"
"""How the consumer settled a delivery (metric attribute): ``complete``, ``dead_letter``,
``retry_scheduled``, ... on ``messaging.process.duration``; ``completed``, ``duplicate``,
... on ``servicebus_events.consumer.outcomes``."""

RETRY_SCHEDULED: Final = "retry_scheduled"
"""``outcome`` of a delivery completed after its re-send was scheduled (delayed retry);
the conventions' disposition values have no such outcome."""
LOCK_LOST: Final = "lock_lost"
"""``outcome`` of a delivery whose lock was lost before it could be settled."""
