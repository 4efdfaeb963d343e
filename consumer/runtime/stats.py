"""Counters per queue, exposed on ``/status``, logged at exit, and added per minute to the
consumer's database by :mod:`consumer.outcome_recorder` (which only reads them)."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class QueueStats:
    """Outcomes on one queue since start-up.

    Attributes:
        received: Messages received.
        completed: Completed after success (or as duplicates).
        duplicates: Completed without effect: the handler had seen the event id.
        dead_lettered: Dead-lettered, by reason.
        retries_scheduled: Re-sent as scheduled messages (delayed retries).
        immediate_retries: In-process retries.
        abandoned: Abandoned (shutdown, redelivery fallback).
        locks_lost: Messages whose lock expired or could not be renewed.
        lock_renewals: Successful lock renewals.
        settlement_failures: Settlements that failed for other reasons (tolerated).
        receiver_restarts: Receivers recreated (link lost, silence).
        in_flight: Messages being processed now.
    """

    received: int = 0
    completed: int = 0
    duplicates: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retries_scheduled: int = 0
    immediate_retries: int = 0
    abandoned: int = 0
    locks_lost: int = 0
    lock_renewals: int = 0
    settlement_failures: int = 0
    receiver_restarts: int = 0
    in_flight: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "completed": self.completed,
            "duplicates": self.duplicates,
            "dead_lettered": dict(self.dead_lettered),
            "retries_scheduled": self.retries_scheduled,
            "immediate_retries": self.immediate_retries,
            "abandoned": self.abandoned,
            "locks_lost": self.locks_lost,
            "lock_renewals": self.lock_renewals,
            "settlement_failures": self.settlement_failures,
            "receiver_restarts": self.receiver_restarts,
            "in_flight": self.in_flight,
        }


@dataclass
class WorkerStats:
    """Per-queue counters, keyed by queue name."""

    queues: dict[str, QueueStats] = field(default_factory=dict)

    def queue(self, name: str) -> QueueStats:
        return self.queues.setdefault(name, QueueStats())

    def to_json(self) -> dict[str, Any]:
        return {name: stats.to_json() for name, stats in self.queues.items()}
