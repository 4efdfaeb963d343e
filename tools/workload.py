"""A realistic, reproducible mix of requests for the producer and of poison messages.

Used by ``make run`` and the benchmarks. Addresses and URLs use the documentation ranges
(RFC 5737 / RFC 3849 IPs, ``example.com`` domains) so nothing can leak to a real host.
"""

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.errors import ConsumerDeadLetterReason
from contracts import AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE, DeadLetterReason

_FIRST = ["Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Alan"]
_LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen"]
_SERVICES = ["billing-service", "report-scheduler", "sync-agent", "ci-runner"]
_ACTIONS = {
    "session": ["user.login", "user.logout", "user.mfa-challenge"],
    "invoice": ["invoice.create", "invoice.approve", "invoice.void", "invoice.export"],
    "document": ["document.view", "document.share", "document.delete"],
    "role": ["role.grant", "role.revoke"],
    "api-key": ["api-key.create", "api-key.rotate", "api-key.revoke"],
}
_USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari",
    "python-httpx/0.28.1",
    "okhttp/4.12.0",
]
TEMPLATES = ("password-reset", "invoice-ready", "weekly-digest", "security-alert")
"""Templates the notifications use: each is in ``consumer/templates`` and renders with the
workload's parameters (``name``, ``count``)."""
MISSING_TEMPLATE = "quarterly-report"
"""A template that deliberately does not exist: e-mails asking for it must be
dead-lettered ``TemplateNotFound`` (live and log delivery modes alike)."""
MISSING_TEMPLATE_RATIO = 0.04
"""Share of templated e-mail notifications that ask for :data:`MISSING_TEMPLATE`."""


@dataclass(frozen=True)
class Request:
    """One HTTP request to send: ``expect`` is the status the producer must answer;
    ``dead_letter`` the reason the consumer must dead-letter the accepted event with
    (``None``: it must be processed)."""

    path: str
    body: bytes
    expect: int
    kind: str
    dead_letter: str | None = None


@dataclass(frozen=True)
class Poison:
    """A message that bypasses the producer and must be dead-lettered with ``reason``."""

    queue: str
    message_id: str
    body: bytes
    content_type: str
    reason: str


class Workload:
    """Generates requests deterministically from ``seed``."""

    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)

    def requests(self, count: int, malformed_ratio: float = 0.05) -> list[Request]:
        """``count`` requests: about 60 % audit, 35 % notifications, the rest malformed.

        About 1 % of all requests (templated e-mails asking for :data:`MISSING_TEMPLATE`)
        are accepted and must then be dead-lettered ``TemplateNotFound``.
        """
        result = []
        for _ in range(count):
            roll = self._rng.random()
            if roll < malformed_ratio:
                result.append(self._malformed())
            elif roll < malformed_ratio + 0.6:
                result.append(Request("/v1/audit-events", _json(self.audit()), 202, "audit"))
            else:
                note = self.notification()
                dead_letter = None
                if (
                    note["channel"] == "email"
                    and "template" in note
                    and self._rng.random() < MISSING_TEMPLATE_RATIO
                ):
                    note["template"] = MISSING_TEMPLATE
                    dead_letter = ConsumerDeadLetterReason.TEMPLATE_NOT_FOUND.value
                result.append(
                    Request("/v1/notifications", _json(note), 202, "notification", dead_letter)
                )
        return result

    def audit(self) -> dict[str, Any]:
        rng = self._rng
        resource_type = rng.choice(list(_ACTIONS))
        is_user = rng.random() < 0.8
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        actor: dict[str, Any] = (
            {
                "id": f"u-{rng.randint(1000, 9999)}",
                "type": "user",
                "display_name": f"{first} {last}",
            }
            if is_user
            else {"id": rng.choice(_SERVICES), "type": "service"}
        )
        occurred = datetime.now(UTC) - timedelta(milliseconds=rng.randint(0, 5000))
        event: dict[str, Any] = {
            "actor": actor,
            "action": rng.choice(_ACTIONS[resource_type]),
            "resource": {
                "type": resource_type,
                "id": f"{resource_type[:3]}-{rng.randint(1, 99999)}",
            },
            "outcome": rng.choices(["success", "failure", "denied"], weights=[85, 10, 5])[0],
            "occurred_at": occurred.isoformat(),
            "details": {"request_id": str(uuid.UUID(int=rng.getrandbits(128)))},
        }
        if is_user:
            event["source_ip"] = (
                f"192.0.2.{rng.randint(1, 254)}"
                if rng.random() < 0.7
                else f"2001:db8::{rng.randint(1, 0xFFFF):x}"
            )
            event["user_agent"] = rng.choice(_USER_AGENTS)
        return event

    def notification(self) -> dict[str, Any]:
        rng = self._rng
        if rng.random() < 0.7:
            first = rng.choice(_FIRST).lower()
            event: dict[str, Any] = {
                "channel": "email",
                "recipient": f"{first}.{rng.randint(1, 500)}@example.com",
            }
        else:
            event = {
                "channel": "webhook",
                "recipient": f"https://hooks.example.com/tenants/{rng.randint(1, 40)}/events",
            }
        if rng.random() < 0.5:
            event["subject"] = "Your weekly summary"
            event["body"] = "Hello,\n\nHere is what happened this week.\n" * rng.randint(1, 20)
        else:
            template = rng.choice(TEMPLATES)
            event["subject"] = template.replace("-", " ").capitalize()
            event["template"] = template
            event["parameters"] = {"name": rng.choice(_FIRST), "count": rng.randint(1, 9)}
        event["priority"] = rng.choices(["low", "normal", "high"], weights=[20, 70, 10])[0]
        return event

    def _malformed(self) -> Request:
        rng = self._rng
        choice = rng.randrange(6)
        if choice == 0:  # required field missing
            audit = self.audit()
            del audit["actor"]
            return Request("/v1/audit-events", _json(audit), 422, "malformed")
        if choice == 1:  # not an IP address
            audit = self.audit()
            audit["source_ip"] = "not-an-ip"
            return Request("/v1/audit-events", _json(audit), 422, "malformed")
        if choice == 2:  # naive timestamp
            audit = self.audit()
            audit["occurred_at"] = "2026-01-01T10:00:00"
            return Request("/v1/audit-events", _json(audit), 422, "malformed")
        if choice == 3:  # bad e-mail address
            note = self.notification()
            note["channel"], note["recipient"] = "email", "someone-at-example.com"
            return Request("/v1/notifications", _json(note), 422, "malformed")
        if choice == 4:  # unknown channel
            note = self.notification()
            note["channel"] = "carrier-pigeon"
            return Request("/v1/notifications", _json(note), 422, "malformed")
        return Request("/v1/audit-events", b'{"actor": {"id": "u-1"', 422, "malformed")

    def poison(self, audit_queue: str, notifications_queue: str, count: int) -> list[Poison]:
        """Messages a foreign or buggy producer might send, each with its expected reason."""
        rng = self._rng
        kinds = [
            (b"this is not json", "text/plain", DeadLetterReason.UNSUPPORTED_CONTENT_TYPE),
            (b"{not json", "application/json", DeadLetterReason.INVALID_JSON),
            (
                _json({"specversion": "1.0", "type": "com.example.unknown", "id": "x"}),
                "application/json",
                DeadLetterReason.UNKNOWN_EVENT_TYPE,
            ),
            (
                _json({"type": AUDIT_EVENT_TYPE, "schemaversion": "99", "id": "x"}),
                "application/json",
                DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION,
            ),
            (
                _json({"type": NOTIFICATION_EVENT_TYPE, "source": "/legacy", "data": {}}),
                "application/json",
                DeadLetterReason.SCHEMA_VALIDATION_FAILED,
            ),
        ]
        result = []
        for index in range(count):
            body, content_type, reason = kinds[index % len(kinds)]
            queue = audit_queue if rng.random() < 0.5 else notifications_queue
            result.append(Poison(queue, str(uuid.uuid4()), body, content_type, reason.value))
        return result


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()
