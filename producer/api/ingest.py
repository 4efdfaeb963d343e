"""Ingestion routes: single and batch audit events and notifications.

Each answers ``202 Accepted`` only after the events are committed to the outbox; they are
published after the response. ``Idempotency-Key`` makes a request safe to retry.
"""

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Request, Response, status
from pydantic import BaseModel

from contracts import AuditEvent, NotificationEvent
from producer.api.deps import PublisherDep
from producer.api.schemas import (
    Accepted,
    AcceptedBatch,
    AuditEventBatch,
    NotificationBatch,
)
from producer.auth import Principal, PrincipalDep
from producer.idempotency import IdempotencyKey, fingerprint, valid_key
from producer.problems import Problem, problem_responses
from producer.publisher import AcceptedEvent, EventPublisher, Submission

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
        max_length=255,
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


async def _ingest(
    request: Request,
    response: Response,
    background: BackgroundTasks,
    publisher: EventPublisher,
    principal: Principal,
    events: Sequence[AuditEvent | NotificationEvent],
    correlation_id: str | None,
    idempotency_key: str | None,
) -> list[Accepted]:
    operation = f"{request.method} {request.url.path}"
    idempotency = _idempotency(principal, idempotency_key, operation, events)
    submissions = [
        Submission(
            publisher.envelope(event, source=principal.source, correlation_id=correlation_id)
        )
        for event in events
    ]
    accepted = await publisher.publish_many(
        submissions, background=background, idempotency=idempotency
    )
    if accepted and accepted[0].replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if len(accepted) == 1:
        response.headers["Location"] = f"/v1/events/{accepted[0].id}"
    return [_accepted(a) for a in accepted]


@router.post(
    "/audit-events",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Record an audit event",
    responses=_RESPONSES,
)
async def post_audit_event(
    event: AuditEvent,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    publisher: PublisherDep,
    principal: PrincipalDep,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Accepted:
    """Commit an audit event to the outbox; it is published to the audit queue after the
    response. ``Location`` points at its status."""
    [accepted] = await _ingest(
        request,
        response,
        background,
        publisher,
        principal,
        [event],
        correlation_id,
        idempotency_key,
    )
    return accepted


@router.post(
    "/audit-events:batch",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Record up to 100 audit events at once",
    responses=_RESPONSES,
)
async def post_audit_events(
    batch: AuditEventBatch,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    publisher: PublisherDep,
    principal: PrincipalDep,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> AcceptedBatch:
    """All or nothing: one invalid event rejects the batch (422 naming it by index, e.g.
    ``["body", "events", 3, "actor"]``); otherwise all are committed in one transaction."""
    accepted = await _ingest(
        request,
        response,
        background,
        publisher,
        principal,
        batch.events,
        correlation_id,
        idempotency_key,
    )
    return AcceptedBatch(events=accepted)


@router.post(
    "/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Request a notification",
    responses=_RESPONSES,
)
async def post_notification(
    event: NotificationEvent,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    publisher: PublisherDep,
    principal: PrincipalDep,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Accepted:
    """Commit a notification to the outbox; it is published to the notifications queue
    after the response, or scheduled for its ``deliver_at`` (cancel it with
    ``DELETE /v1/notifications/{id}`` until then)."""
    [accepted] = await _ingest(
        request,
        response,
        background,
        publisher,
        principal,
        [event],
        correlation_id,
        idempotency_key,
    )
    return accepted


@router.post(
    "/notifications:batch",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Request up to 100 notifications at once",
    responses=_RESPONSES,
)
async def post_notifications(
    batch: NotificationBatch,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    publisher: PublisherDep,
    principal: PrincipalDep,
    correlation_id: CorrelationId = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> AcceptedBatch:
    """All or nothing, like ``POST /v1/audit-events:batch``."""
    accepted = await _ingest(
        request,
        response,
        background,
        publisher,
        principal,
        batch.events,
        correlation_id,
        idempotency_key,
    )
    return AcceptedBatch(events=accepted)
