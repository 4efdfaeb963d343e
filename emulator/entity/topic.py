"""A topic: duplicate detection and scheduling like a queue, then a copy per subscription.

From https://learn.microsoft.com/azure/service-bus-messaging/service-bus-queues-topics-subscriptions
and https://learn.microsoft.com/azure/service-bus-messaging/topic-filters: a message sent to a
topic is copied to every subscription whose rules select it (see
:func:`emulator.rules.subscription_copies`); a subscription is an ordinary
:class:`~emulator.entity.queue.Entity` with its own dead-letter queue. The topic holds no
active message.

* Duplicate detection (``RequiresDuplicateDetection``) runs on the topic, before fan-out.
* A scheduled message stays on the topic (its sequence number is the topic's, so the topic
  sender can cancel it) and is copied when it becomes active; rules see it then.
  "Scheduled messages don't materialize in the queue until the defined enqueue time"
  (https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing).
* The topic's ``DefaultMessageTimeToLive`` caps each copy's time to live; the subscription's
  own default applies on top ("If the topic specifies a smaller TTL than the subscription,
  the topic TTL is applied").
* A filter or action that fails on a message (Azure's ``FilterException``) dead-letters the
  message in that subscription when ``DeadLetteringOnFilterEvaluationExceptions`` is on (the
  default), and drops it for that subscription otherwise; other subscriptions still get it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from emulator.codec import Header, MessageContent
from emulator.entity.message_view import apply_view, message_view
from emulator.entity.queue import Entity
from emulator.entity.settings import EntitySettings
from emulator.rules import Rule, RuleEvaluationError, TrueFilter, subscription_copies

__all__ = ["FILTER_EVALUATION_FAILED", "SubscriptionRoute", "Topic"]

_log = logging.getLogger(__name__)

#: ``DeadLetterReason`` of a message whose filter or action failed in a subscription. Azure
#: does not document the text; the emulator names the exception type.
FILTER_EVALUATION_FAILED = "FilterEvaluationException"


@dataclass(frozen=True, slots=True)
class SubscriptionRoute:
    """A subscription as its topic sees it.

    Attributes:
        entity: The subscription (its messages, locks and dead-letter queue).
        rules: Its rules, in order; never empty (``$Default`` when none was configured).
        dead_letter_on_filter_error: ``DeadLetteringOnFilterEvaluationExceptions``.
    """

    entity: Entity
    rules: Sequence[Rule]
    dead_letter_on_filter_error: bool = True

    @property
    def takes_everything(self) -> bool:
        """Whether every message is copied unchanged (true filters, no action)."""
        return all(isinstance(r.filter, TrueFilter) and r.action is None for r in self.rules)


class Topic(Entity):
    """A topic: accepts and schedules messages like a queue, and fans them out.

    Args:
        name: Topic path as configured.
        settings: ``default_ttl``, ``duplicate_detection_window`` and ``max_message_size``
            apply; a topic has no locks, sessions or dead-letter queue.
    """

    def __init__(self, name: str, settings: EntitySettings) -> None:
        super().__init__(name, settings)
        self.subscriptions: list[SubscriptionRoute] = []

    def _route(self, content: MessageContent, now: float, hops: int) -> bool:
        self.fan_out(content, now, hops)
        return True

    def _capped(self, content: MessageContent) -> MessageContent:
        default = self.settings.default_ttl
        if default is None:
            return content
        default_ms = round(default * 1000)
        own = content.header.ttl_ms
        if own and own <= default_ms:
            return content
        header: Header = replace(content.header, ttl_ms=default_ms)
        return replace(content, header=header)

    def fan_out(self, content: MessageContent, now: float, hops: int) -> None:
        """Copy an active message to every subscription whose rules select it.

        Args:
            content: The message as sent.
            now: Seconds since the epoch.
            hops: Auto-forwarding hops the message made to reach the topic (fan-out itself
                is not a hop).
        """
        content = self._capped(content)
        view = None
        for route in self.subscriptions:
            subscription = route.entity
            if route.takes_everything:
                subscription.accept_forwarded(content, now, hops)
                continue
            if view is None:
                view = message_view(content, now)
            try:
                copies = subscription_copies(route.rules, view)
            except RuleEvaluationError as exc:
                if route.dead_letter_on_filter_error:
                    subscription.dead_letter_arrived(
                        content, now, FILTER_EVALUATION_FAILED, str(exc), hops
                    )
                else:
                    _log.warning("%s: %s; message dropped for it", subscription.name, exc)
                continue
            for copy in copies:
                out = content if copy is view else apply_view(content, view, copy)
                subscription.accept_forwarded(out, now, hops)
