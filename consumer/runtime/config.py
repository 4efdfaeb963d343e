"""How one queue is processed: :class:`QueueConfig` and the default receiver count."""

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueConfig:
    """How one queue is processed. Times are in seconds.

    Attributes:
        name: Queue name.
        concurrency: Messages processed at once.
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
        setting: The environment variable naming the queue (e.g. ``CONSUMER_AUDIT_QUEUE``),
            for messages saying the queue does not exist.
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
