"""How one source (queue or subscription) is processed: :class:`QueueConfig`, and the
default receiver count."""

from dataclasses import dataclass
from functools import cached_property

from consumer.runtime.entities import EntityPath


@dataclass(frozen=True)
class QueueConfig:
    """How one source is processed: a queue or a topic subscription. Times are in seconds.

    Attributes:
        name: Entity path: the queue name, or ``<topic>/Subscriptions/<subscription>``
            (read with ``get_subscription_receiver``). Telemetry names it as the
            destination, and its counters are kept under it.
        concurrency: Messages processed at once (session sources: see ``sessions``).
        receivers: Receivers (each its own AMQP connection and link) reading the queue;
            ``None`` picks :func:`receivers_for` ``(concurrency)``. Every call on one
            receiver is serialised and a settlement waits for the service's answer, so
            one receiver settles one message per round trip; more receivers overlap
            those round trips. Each receiver takes its own share of the messages the
            queue may hold (:mod:`consumer.runtime.credit`).
        prefetch_count: SDK prefetch for each receiver (0 = off).
        max_message_count: Most messages asked for per receive call.
        max_wait_time: Receive wait while nothing is in flight (bounds shutdown latency).
        busy_wait_time: Receive wait while handlers run; settlements and lock renewals
            on the same receiver wait at most about this long.
        max_delivery_count: The queue's MaxDeliveryCount (must match the entity).
        max_processing_time: Longest a message is worked on, lock renewal included;
            the handler is then cancelled and the failure treated as transient.
        recycle_after_idle: Recreate a receiver that got nothing for this long (Service
            Bus detaches links idle for 10 minutes; a stale link can receive nothing
            without raising). 0 disables.
        event_types: Event types this queue carries; others are dead-lettered with
            ``WrongQueue``. ``None`` accepts any.
        setting: The environment variable naming the source (e.g. ``CONSUMER_AUDIT_QUEUE``),
            for messages saying it does not exist.
        sessions: The entity requires sessions: messages are processed in order per
            session, one at a time within a session, ``max_concurrent_sessions`` sessions
            at once (:mod:`consumer.runtime.sessions`).
        max_concurrent_sessions: Sessions processed at once, each on its own receiver.
        sessions_setting: The environment variable that turns ``sessions`` on.
    """

    name: str
    concurrency: int = 8
    receivers: int | None = None
    prefetch_count: int = 0
    max_message_count: int = 50
    max_wait_time: float = 2.0
    busy_wait_time: float = 0.2
    max_delivery_count: int = 10
    max_processing_time: float = 300.0
    recycle_after_idle: float = 300.0
    event_types: frozenset[str] | None = None
    setting: str | None = None
    sessions: bool = False
    max_concurrent_sessions: int = 8
    sessions_setting: str | None = None

    @cached_property
    def entity(self) -> EntityPath:
        """``name`` parsed (raises ``ValueError`` when it is neither form)."""
        return EntityPath.parse(self.name)

    @property
    def resends_retries(self) -> bool:
        """Delayed retries re-send a scheduled copy to the entity.

        Not for a subscription (Service Bus cannot send to one: a copy sent to the topic
        would reach every subscription whose rules match) nor for a session source (a
        copy would go behind the session's later messages). These hold the message and
        abandon it when its retry is due (:mod:`consumer.runtime.redelivery`).
        """
        return not (self.sessions or self.entity.is_subscription)

    @property
    def receiver_count(self) -> int:
        """``receivers``, or the default for ``concurrency`` when it is ``None``."""
        return receivers_for(self.concurrency) if self.receivers is None else self.receivers


SLOTS_PER_RECEIVER = 16
"""Handler slots one receiver keeps fed by default (see :func:`receivers_for`)."""


def receivers_for(concurrency: int) -> int:
    """Default receivers for a queue processed ``concurrency`` messages at a time.

    One per 16 handler slots, at least 2 and at most 8. Since azure-servicebus 7.15 every
    peek-lock settlement waits for the service's outcome (one round trip each), and the
    SDK's pure-Python transport reads and writes a connection under one lock, so
    settlements on one receiver do not overlap even when awaited together: a receiver
    settles at most one message per round trip, and at high concurrency its receive calls
    queue behind those settlements, leaving handler slots empty. Receivers on separate
    connections overlap them (docs/benchmarks/findings.md, section 11).
    """
    return max(2, min(8, concurrency // SLOTS_PER_RECEIVER))
