"""Ingestion routes: single and batch audit events and notifications.

Each answers ``202 Accepted`` only after the events are committed to the outbox; they are
published after the response. ``Idempotency-Key`` makes a request safe to retry.
"""

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request, Response, status
from pydantic import BaseModel

from contracts import AuditEvent, NotificationEvent
from producer.api.schemas import (
    Accepted,
    AcceptedBatch,
    AuditEventBatch,
    NotificationBatch,
)
from producer.auth import Principal, PrincipalDep
from producer.idempotency import IdempotencyKey, fingerprint, valid_key
from producer.problems import Problem, problem_responses
from producer.publisher import AcceptedEvent, EventPublisher, Submission, get_event_publisher

router = APIRouter(tags=["events"])

CorrelationId = Annotated[
    str | None,
    Header(
        alias="X-Correlation-ID",
        min_length=1,
        max_length=128,
        description="Becomes the envelope's correlationid and the message's correlation id",
    ),
]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7E]+$",  # what valid_key checks, so the OpenAPI document says it
        description="Retrying with the same key and body returns the original event ids; "
        "the same key with a different body is 409",
    ),
]

_RESPONSES = problem_responses(401, 403, 409, 413, 422, 503)


def _idempotency(
    principal: Principal, key: str | None, operation: str, bodies: Sequence[BaseModel]
) -> IdempotencyKey | None:
    if key is None:
        return None
    if not valid_key(key):
        raise Problem(
            422,
            "Idempotency-Key must be 1-255 printable ASCII characters",
            kind="validation-error",
            errors=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "pointer": None,
                    "msg": "must be 1-255 printable ASCII characters",
                    "type": "value_error",
                }
            ],
        )
    return IdempotencyKey(principal.source, key, fingerprint(operation, bodies))


def _accepted(item: AcceptedEvent) -> Accepted:
    return Accepted(
        id=item.id,
        type=item.type,
        queue=item.queue,
        deliver_at=item.deliver_at,
        links={"status": f"/v1/events/{item.id}"},
    )


class Ingest:
    """What every ingestion route needs from its request; call it with the events.

    Built by :func:`ingest_dependency`, so the four routes declare only their body.
    """

    def __init__(
        self,
        request: Request,
        response: Response,
        background: BackgroundTasks,
        publisher: EventPublisher,
        principal: Principal,
        correlation_id: str | None,
        idempotency_key: str | None,
    ) -> None:
        self._request = request
        self._response = response
        self._background = background
        self._publisher = publisher
        self._principal = principal
        self._correlation_id = correlation_id
        self._idempotency_key = idempotency_key

    async def __call__(self, events: Sequence[AuditEvent | NotificationEvent]) -> list[Accepted]:
        """Commit ``events`` (all or none); one accepted event also gets ``Location``."""
        operation = f"{self._request.method} {self._request.url.path}"
        idempotency = _idempotency(self._principal, self._idempotency_key, operation, events)
        publisher = self._publisher
        submissions = [
            Submission(
                publisher.envelope(
                    event, source=self._principal.source, correlation_id=self._correlation_id
                )
            )
            for event in events
        ]
        accepted = await publisher.publish_many(
            submissions, background=self._background, idempotency=idempotency
        )
        if accepted and accepted[0].replayed:
            self._response.headers["Idempotent-Replayed"] = "true"
        if len(accepted) == 1:
            self._response.headers["Location"] = f"/v1/events/{accepted[0].id}"
        return [_accepted(a) for a in accepted]


async def ingest_dependency(
    request: Request,
    response: Response,
    background: BackgroundTasks,
    principal: PrincipalDep,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Ingest:
    """FastAPI dependency: the request's :class:`Ingest`.

    A coroutine, not the class itself: FastAPI runs a plain callable dependency (a class
    included) in its thread pool, a thread hop per request (~5 % of the accept path's CPU).
    The publisher is looked up here rather than declared as one more dependency: each
    dependency FastAPI solves costs ~10 µs per request on this path.
    """
    publisher = await get_event_publisher(request)
    return Ingest(
        request, response, background, publisher, principal, correlation_id, idempotency_key
    )


IngestDep = Annotated[Ingest, Depends(ingest_dependency)]


@router.post(
    "/audit-events",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Record an audit event",
    responses=_RESPONSES,
)
async def post_audit_event(event: AuditEvent, ingest: IngestDep) -> Accepted:
    """Commit an audit event to the outbox; it is published to the audit queue after the
    response. ``Location`` points at its status."""
    [accepted] = await ingest([event])
    return accepted


@router.post(
    "/audit-events:batch",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Record up to 100 audit events at once",
    responses=_RESPONSES,
)
async def post_audit_events(batch: AuditEventBatch, ingest: IngestDep) -> AcceptedBatch:
    """All or nothing: one invalid event rejects the batch (422 naming it by index, e.g.
    ``["body", "events", 3, "actor"]``); otherwise all are committed in one transaction."""
    return AcceptedBatch(events=await ingest(batch.events))


@router.post(
    "/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Request a notification",
    responses=_RESPONSES,
)
async def post_notification(event: NotificationEvent, ingest: IngestDep) -> Accepted:
    """Commit a notification to the outbox; it is published to the notifications queue
    after the response, or scheduled for its ``deliver_at`` (cancel it with
    ``DELETE /v1/notifications/{id}`` until then)."""
    [accepted] = await ingest([event])
    return accepted


@router.post(
    "/notifications:batch",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Request up to 100 notifications at once",
    responses=_RESPONSES,
)
async def post_notifications(batch: NotificationBatch, ingest: IngestDep) -> AcceptedBatch:
    """All or nothing, like ``POST /v1/audit-events:batch``."""
    return AcceptedBatch(events=await ingest(batch.events))
