"""``/dlq``: dead letters per queue grouped by reason, one message in full, and replay or
purge of a selection (confirm, then result) through :mod:`consumer.dlq`, as the CLI does.

The confirmation page peeks the selection and states its count; the action then works on
exactly those sequence numbers (dead letters that arrive meanwhile are not touched), as
``consumer dlq purge`` does after its prompt. Every action is written to the audit chain
(:mod:`console.actions`); without an audit store the console refuses to act.
"""

from collections import Counter
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import Response

from console import actions
from console.bodies import render_body, show_value
from console.deps import OperatorDep, PrincipalDep, ServicesDep, render
from console.services import Services
from consumer import dlq as dlq_api
from contracts.audit import AuditOutcome

router = APIRouter()
Action = Literal["replay", "purge"]
Numbers = Annotated[list[int], Form(alias="sequence_number")]


def _queue(services: Services, queue: str) -> str:
    if queue not in services.settings.queues:
        raise HTTPException(404, f"unknown queue {queue!r}")
    return queue


@router.get("/dlq")
async def overview(request: Request, _principal: PrincipalDep, services: ServicesDep) -> Response:
    queues = []
    for queue in services.settings.queues:
        try:
            items = await dlq_api.list_dead_letters(
                services.client, queue, limit=services.settings.peek_limit
            )
        except dlq_api.DlqError as error:
            queues.append({"name": queue, "error": str(error), "reasons": [], "total": 0})
            continue
        reasons = Counter(item.reason or "(no reason)" for item in items)
        queues.append(
            {
                "name": queue,
                "error": None,
                "reasons": sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
                "total": len(items),
                "capped": len(items) >= services.settings.peek_limit,
            }
        )
    return render(request, "dlq.html", {"queues": queues})


@router.get("/dlq/{queue}")
async def listing(
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    queue: str,
    reason: str | None = None,
) -> Response:
    _queue(services, queue)
    try:
        items = await dlq_api.list_dead_letters(
            services.client, queue, limit=services.settings.peek_limit
        )
    except dlq_api.DlqError as error:
        return render(request, "error.html", {"title": "DLQ", "message": str(error)}, 502)
    if reason is not None:
        items = [item for item in items if (item.reason or "(no reason)") == reason]
    context = {"queue": queue, "reason": reason, "items": items, "operator": principal.is_operator}
    return render(request, "dlq_list.html", context)


@router.get("/dlq/{queue}/messages/{sequence_number}")
async def message(
    request: Request,
    _principal: PrincipalDep,
    services: ServicesDep,
    queue: str,
    sequence_number: int,
) -> Response:
    _queue(services, queue)
    try:
        item = await dlq_api.show(services.client, queue, sequence_number)
    except dlq_api.DlqError as error:
        return render(request, "error.html", {"title": "Dead letter", "message": str(error)}, 404)
    properties = sorted((name, show_value(value)) for name, value in item.properties.items())
    context = {
        "queue": queue,
        "item": item,
        "properties": properties,
        "body": render_body(item.body),
    }
    return render(request, "dlq_message.html", context)


@router.post("/dlq/{queue}/confirm")
async def confirm(
    request: Request,
    principal: OperatorDep,
    services: ServicesDep,
    queue: str,
    action: Annotated[Action, Form()],
    numbers: Numbers = [],  # noqa: B006 - FastAPI copies the default
) -> Response:
    _queue(services, queue)
    if not numbers:
        message = "Select at least one dead letter."
        return render(request, "error.html", {"title": "Nothing selected", "message": message}, 400)
    selection = dlq_api.Selection(sequence_numbers=frozenset(numbers))
    try:
        chosen = await dlq_api.select(services.client, queue, selection)
    except dlq_api.DlqError as error:
        return render(request, "error.html", {"title": "DLQ", "message": str(error)}, 502)
    context = {"queue": queue, "action": action, "items": chosen, "asked": len(numbers)}
    return render(request, "dlq_confirm.html", context)


@router.post("/dlq/{queue}/{action}")
async def act(
    request: Request,
    principal: OperatorDep,
    services: ServicesDep,
    queue: str,
    action: Action,
    numbers: Numbers = [],  # noqa: B006 - FastAPI copies the default
) -> Response:
    _queue(services, queue)
    if services.store is None:
        message = "Replay and purge are audited: set CONSOLE_AUDIT_STORE_URL."
        return render(request, "error.html", {"title": "Not available", "message": message}, 503)
    if not numbers:
        message = "Select at least one dead letter."
        return render(request, "error.html", {"title": "Nothing selected", "message": message}, 400)
    selection = dlq_api.Selection(sequence_numbers=frozenset(numbers))
    error: str | None = None
    try:
        if action == "replay":
            outcome = await dlq_api.replay(services.client, queue, selection)
        else:
            outcome = await dlq_api.purge(services.client, queue, selection)
    except dlq_api.DlqError as stopped:
        outcome, error = stopped.outcome or dlq_api.Outcome(), str(stopped)
    done = len(outcome.replayed) if action == "replay" else outcome.purged
    complete = error is None and not outcome.failed and not outcome.missing
    details = {
        "queue": queue,
        "selected": len(outcome.matched),
        "asked": len(numbers),
        "done": done,
        "failed": len(outcome.failed),
        "missing": len(outcome.missing),
        "sequence_numbers": sorted(numbers)[:100],
        "replayed": {str(k): v for k, v in list(outcome.replayed.items())[:100]},
    }
    await actions.record(
        services.store,
        principal,
        f"console.dlq.{action}",
        ("dlq", queue),
        AuditOutcome.SUCCESS if complete else AuditOutcome.FAILURE,
        details,
        request,
        reason=error,
    )
    context = {"queue": queue, "action": action, "outcome": outcome, "done": done, "error": error}
    return render(request, "dlq_result.html", context)
