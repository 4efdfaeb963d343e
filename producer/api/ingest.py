"""Ingestion routes: ``POST <path>`` and ``POST <path>:batch`` per registered event type.

The routes are generated from ``contracts.registry``: every event type whose newest
version names an ``http_path`` gets both, with its ``data`` model as the body, so an event
type is accepted over HTTP from its registration alone (``docs/extending.md``). Each answers
``202 Accepted`` only after the events are committed to the outbox; they are published
after the response. ``Idempotency-Key`` makes a request safe to retry.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Request, Response, status
from pydantic import BaseModel

from contracts import AUDIT_EVENT_TYPE, NOTIFICATION_EVENT_TYPE, EventSpec
from contracts.registry import current_spec, event_types
from producer.api.deps import get_event_publisher
from producer.api.schemas import (
    MAX_BATCH_EVENTS,
    Accepted,
    AcceptedBatch,
    AuditEventBatch,
    NotificationBatch,
    batch_model,
)
from producer.auth import Principal, PrincipalDep
from producer.idempotency import IdempotencyKey, fingerprint, valid_key
from producer.problems import Problem, problem_responses
from producer.publisher import AcceptedEvent, EventPublisher, Submission

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

    async def __call__(self, events: Sequence[Any]) -> list[Accepted]:
        """Commit ``events`` (all or none); one accepted event also gets ``Location``.

        Args:
            events: Instances of registered ``data`` models: the route's body model, chosen
                from ``contracts.registry`` when the routes are built.
        """
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
    included) in its thread pool, a thread hop per request (docs/benchmarks/findings.md
    §14.3). The publisher is looked up here rather than declared as one more dependency:
    FastAPI pays for each dependency it solves on every request
    (docs/benchmarks/findings.md §14.4).
    """
    publisher = await get_event_publisher(request)
    return Ingest(
        request, response, background, publisher, principal, correlation_id, idempotency_key
    )


IngestDep = Annotated[Ingest, Depends(ingest_dependency)]


@dataclass(frozen=True)
class RouteDocs:
    """How one event type's two routes are named and described in the OpenAPI document.

    Attributes:
        operation: Name stem: the routes are ``post_<operation>`` and
            ``post_<operation>s``, e.g. ``audit_event``.
        summary / description: Of ``POST <path>``.
        batch_summary / batch_description: Of ``POST <path>:batch``.
        batch_model: The batch body; ``None``: ``<Model>Batch``
            (:func:`producer.api.schemas.batch_model`).
    """

    operation: str
    summary: str
    description: str
    batch_summary: str
    batch_description: str
    batch_model: type[BaseModel] | None = None


_SHIPPED_DOCS = {
    AUDIT_EVENT_TYPE: RouteDocs(
        operation="audit_event",
        summary="Record an audit event",
        description="Commit an audit event to the outbox; it is published to the audit queue "
        "after the\nresponse. ``Location`` points at its status.",
        batch_summary="Record up to 100 audit events at once",
        batch_description="All or nothing: one invalid event rejects the batch (422 naming it "
        'by index, e.g.\n``["body", "events", 3, "actor"]``); otherwise all are committed in '
        "one transaction.",
        batch_model=AuditEventBatch,
    ),
    NOTIFICATION_EVENT_TYPE: RouteDocs(
        operation="notification",
        summary="Request a notification",
        description="Commit a notification to the outbox; it is published to the "
        "notifications queue\nafter the response, or scheduled for its ``deliver_at`` "
        "(cancel it with\n``DELETE /v1/notifications/{id}`` until then).",
        batch_summary="Request up to 100 notifications at once",
        batch_description="All or nothing, like ``POST /v1/audit-events:batch``.",
        batch_model=NotificationBatch,
    ),
}
"""The shipped types' texts, as they were when their routes were written by hand."""


def route_docs(spec: EventSpec) -> RouteDocs:
    """The shipped text of ``spec``'s routes, or one derived from its registration."""
    shipped = _SHIPPED_DOCS.get(spec.event_type)
    if shipped is not None:
        return shipped
    assert spec.http_path is not None
    return RouteDocs(
        operation=spec.http_path.strip("/").replace("-", "_").replace("/", "_"),
        summary=spec.title,
        description=f"Commit a ``{spec.event_type}`` event to the outbox; it is published to "
        f"the {spec.queue} queue after the response. ``Location`` points at its status.",
        batch_summary=f"{spec.title}: up to {MAX_BATCH_EVENTS} at once",
        batch_description="All or nothing: one invalid event rejects the batch (422 naming it "
        "by index); otherwise all are committed in one transaction.",
    )


def ingest_router() -> APIRouter:
    """The ingestion routes of every event type registered now, in event type order.

    Build it when the app is built, after every :func:`contracts.registry.register`.
    """
    router = APIRouter(tags=["events"])
    for event_type in event_types():
        spec = current_spec(event_type)
        if spec.http_path is not None:
            add_ingest_routes(router, spec, route_docs(spec))
    return router


def add_ingest_routes(router: APIRouter, spec: EventSpec, docs: RouteDocs) -> None:
    """Add ``POST <http_path>`` (one event) and ``POST <http_path>:batch`` for ``spec``.

    Both take the event's ``data`` model as their body (not the envelope) and answer
    ``202`` with :class:`~producer.api.schemas.Accepted` / ``AcceptedBatch``.
    """
    assert spec.http_path is not None
    batch = docs.batch_model or batch_model(spec.data_model, spec.title)

    async def post_one(event: Any, ingest: IngestDep) -> Accepted:
        [accepted] = await ingest([event])
        return accepted

    async def post_batch(batch: Any, ingest: IngestDep) -> AcceptedBatch:
        return AcceptedBatch(events=await ingest(batch.events))

    # The body models are known only now; FastAPI reads them from the annotations.
    post_one.__annotations__["event"] = spec.data_model
    post_batch.__annotations__["batch"] = batch
    for path, endpoint, name, summary, description in (
        (spec.http_path, post_one, docs.operation, docs.summary, docs.description),
        (
            f"{spec.http_path}:batch",
            post_batch,
            f"{docs.operation}s",
            docs.batch_summary,
            docs.batch_description,
        ),
    ):
        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            status_code=status.HTTP_202_ACCEPTED,
            name=f"post_{name}",
            summary=summary,
            description=description,
            responses=_RESPONSES,
        )
