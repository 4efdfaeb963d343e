"""Turn an outgoing ServiceBusMessage into the ServiceBusReceivedMessage a receiver gets.

No broker and no mocks: the message is encoded with the SDK's own AMQP encoder (what the
sender puts on the wire) and decoded with the SDK's decoder, then wrapped the way the SDK
wraps peeked and deferred messages (``ServiceBusReceivedMessage(message, receiver=...)``).
"""

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport


def as_received(message: ServiceBusMessage) -> ServiceBusReceivedMessage:
    """The message as a receiver would see it after one trip over AMQP."""
    amqp_message = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
    wire = encode_payload(bytearray(), amqp_message)
    return ServiceBusReceivedMessage(decode_payload(memoryview(wire)), receiver=None)
