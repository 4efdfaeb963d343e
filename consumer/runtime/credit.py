"""Link credit: a receiver holds credit only while it is in a receive call.

AMQP 1.0 flow control (section 2.6.7, "Flow Control",
https://docs.oasis-open.org/amqp/core/v1.0/os/amqp-core-transport-v1.0-os.html#doc-flow-control):
a receiver grants its link ``link-credit``; the sender (Service Bus) may transfer that many
messages to the link whenever it has them, each transfer using one. A ``flow`` sets the
credit outright: ``link-credit`` 0 stops transfers (``drain`` instead asks the sender to
use the credit up at once, which is not what an idle receiver wants). In peek-lock mode
every transfer locks a message for that receiver.

With ``prefetch_count=0``, each ``receive_messages(max_message_count=N)`` of
azure-servicebus 7.x sends a flow of N credits and neither drains nor resets what is left
when the call returns. Service Bus (or the emulator) delivers to any link with credit, and
the SDK gives back (``released``) a message that arrives outside a receive call: at once
if a settlement or lock renewal is reading the connection (a wasted round trip, and the
message goes back to the end of the line), or only on the SDK's keep-alive, about every
5 s, if the receiver idles -- the message then reaches a handler seconds late (issue 22;
the emulator's protocol notes, PROTOCOL.md, "Link credit outlives a receive call").
In end-to-end runs at 100 events/s on a busy 2-core machine the emulator got 54 to 585
``released`` outcomes per 650 events before this module, 8 to 121 after (messages in
flight when the credit was taken back; see the last paragraph).

So the consumer keeps credit with receiving receivers only:

* a receive call that got fewer messages than it asked for takes the rest of its credit
  back before its receiver's lock is released (:func:`take_back_credit`, called by
  ``ReceiverChannel.receive``); a call that got all it asked for has none left;
* each receiver has its own share of the queue's capacity (:func:`split_capacity`) and
  asks for at most its free share, so it can always take what it is sent, and the
  receivers receive side by side instead of taking turns;
* should the SDK stop exposing its link (:func:`take_back_credit` returns ``False``),
  the receive loop falls back to calling again at once after a short call (its free share
  is then at least 1), so it never waits for capacity holding credit.

Messages the service sent before it read the flow still arrive; the SDK releases them
when it next reads the connection. That window is one loopback or network hop.
"""

import logging
from typing import Any

logger = logging.getLogger(__name__)


def split_capacity(capacity: int, receivers: int) -> list[int]:
    """Each receiver's share of ``capacity`` messages in hand, as even as possible.

    Args:
        capacity: Messages the queue may hold whose handler has not finished (>= 1).
        receivers: Receivers on the queue (>= 1).

    Returns:
        ``receivers`` shares adding up to ``max(capacity, receivers)``: every receiver
        may take at least one message, or it could never receive.

    Raises:
        ValueError: ``capacity`` or ``receivers`` is below 1.
    """
    if capacity < 1 or receivers < 1:
        raise ValueError(f"capacity and receivers must be >= 1 (got {capacity}, {receivers})")
    total = max(capacity, receivers)
    base, extra = divmod(total, receivers)
    return [base + (index < extra) for index in range(receivers)]


async def take_back_credit(receiver: Any) -> bool:
    """Set the credit of ``receiver``'s link to 0 (an AMQP flow with ``link-credit`` 0).

    The SDK has no public call for this: ``receive_messages`` always grants at least one
    credit, and its own reset (``ReceiverLink.flow`` of its ``_pyamqp`` package, which
    its ``reset_link_credit_async`` calls) is internal. So it is reached here, in one
    place; if a later SDK moves it, this returns ``False`` and the caller keeps the
    receiver receiving instead (see the module docstring). Not coroutine-safe: call it
    under the lock that serialises the receiver's calls. Never raises: a failed flow is
    logged (the connection is failing; the next receive call reports it).

    Args:
        receiver: An open ``azure.servicebus.aio.ServiceBusReceiver`` in peek-lock mode
            with ``prefetch_count=0``.

    Returns:
        True when the link holds no credit now; False when it may still hold some.
    """
    handler = getattr(receiver, "_handler", None)
    link = getattr(handler, "_link", None)
    flow = getattr(link, "flow", None)
    credit = getattr(link, "current_link_credit", None)
    if flow is None or not isinstance(credit, int):
        logger.debug("cannot reach the receive link of %r to take its credit back", receiver)
        return False
    if credit <= 0:
        return True
    try:
        await flow(link_credit=0)
    except Exception as exc:
        logger.info("cannot take back the link credit of a receiver: %r", exc)
        return False
    return True
