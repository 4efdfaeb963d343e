"""Error responses as RFC 9457 problem details (``application/problem+json``).

Every error the producer answers has the members ``type``, ``title``, ``status`` and
``detail`` (https://www.rfc-editor.org/rfc/rfc9457#section-3.1). Problem types specific to
this API are relative URIs ``/problems/<name>`` that the producer serves itself
(``GET /problems/<name>`` describes the type); the others are ``about:blank``, meaning
"see the HTTP status". Validation errors (422) add an ``errors`` array naming each bad
field by ``loc`` (FastAPI's location, e.g. ``["body", "actor", "id"]``) and ``pointer``
(a JSON Pointer into the request body, e.g. ``#/actor/id``), as in RFC 9457 section 3. A
body that is not JSON at all (or not UTF-8, RFC 8259 section 8.1) has no JSON Pointer: its
error has ``pointer: null``, ``loc: ["body"]`` and says where parsing stopped in ``line``,
``column`` and ``offset``.
"""

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from producer.errors import (
    CancellationPendingError,
    DuplicateEventError,
    EventNotFoundError,
    EventTooLargeError,
    IdempotencyConflictError,
    NotCancellableError,
    OutboxUnavailableError,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"

PROBLEM_TYPES: Final[Mapping[str, tuple[str, str]]] = {
    "validation-error": (
        "Request validation failed",
        "The request body, a header or a path parameter is invalid. `errors[]` names "
        "every bad field by `loc` and `pointer`; fix them and send the request again.",
    ),
    "unauthenticated": (
        "Authentication required",
        "Send an API key in `X-API-Key` or a Microsoft Entra ID access token in "
        "`Authorization: Bearer ...`. `WWW-Authenticate` lists the accepted schemes.",
    ),
    "forbidden": (
        "Not allowed",
        "The credential is valid but lacks the app role this producer requires.",
    ),
    "idempotency-conflict": (
        "Idempotency-Key reused with a different request",
        "The `Idempotency-Key` was already used by this caller with a different body or "
        "route. Use a new key for a new request.",
    ),
    "not-cancellable": (
        "Notification cannot be cancelled",
        "Cancelling is refused once the notification is published: it was sent to its "
        "queue (no `deliver_at`), or its scheduled enqueue time has passed, so a consumer "
        "may already have it. A notification that failed cannot be cancelled either. "
        "`event_status` gives its status (`published` or `failed`).",
    ),
    "cancellation-pending": (
        "Notification is being published",
        "The notification is being sent right now; ask again after `Retry-After` seconds.",
    ),
    "duplicate-event": (
        "Event already accepted",
        "An event with this id is already in the outbox.",
    ),
    "event-too-large": (
        "Event too large",
        "The event's Service Bus message would exceed the queue's maximum message size.",
    ),
    "content-too-large": (
        "Request body too large",
        "The request body exceeds the producer's limit (`PRODUCER_MAX_REQUEST_BYTES`).",
    ),
    "request-header-fields-too-large": (
        "Request header fields too large",
        "The request's header fields are larger in total than `PRODUCER_MAX_HEADER_BYTES` "
        "(name, value and 4 bytes per field) or more than `PRODUCER_MAX_HEADER_COUNT` "
        "(RFC 6585 section 5).",
    ),
    "outbox-unavailable": (
        "Temporarily unavailable",
        "The outbox database (or Service Bus, for cancellations) cannot be reached; "
        "nothing was accepted. Retry after `Retry-After` seconds.",
    ),
}


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; extension members may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="URI reference identifying the problem type")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="HTTP status code")
    detail: str = Field(description="Explanation specific to this occurrence")
    instance: str | None = Field(None, description="The request path")


class FieldError(BaseModel):
    """One invalid field of a 422 answer."""

    loc: list[str | int] = Field(description='Where, e.g. ["body", "actor", "id"]')
    pointer: str | None = Field(
        None,
        description="JSON Pointer into the body, e.g. #/actor/id; null for a header or "
        "path parameter, and for a body that is not valid JSON",
    )
    msg: str
    type: str
    line: int | None = Field(
        None, description="Body not valid JSON: line where parsing stopped (from 1)"
    )
    column: int | None = Field(
        None, description="Body not valid JSON: column where parsing stopped (from 1)"
    )
    offset: int | None = Field(
        None,
        description="Body not valid JSON: where parsing stopped, in characters from the "
        "start (from 0); in bytes when the body is not UTF-8",
    )


class ValidationProblem(ProblemDetails):
    """A 422 problem: ``errors`` names each invalid field."""

    errors: list[FieldError]


class Problem(Exception):
    """Raise to answer with a problem document.

    Args:
        status: HTTP status.
        detail: What went wrong in this occurrence.
        kind: Key of :data:`PROBLEM_TYPES` (type URI ``/problems/<kind>`` and its title);
            ``None`` for ``about:blank`` with the status phrase as title.
        headers: Extra response headers (``WWW-Authenticate``, ``Retry-After``).
        extensions: Extra members of the document.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """Build the ``application/problem+json`` response."""
    if kind is not None:
        type_uri, title = f"/problems/{kind}", PROBLEM_TYPES[kind][0]
    else:
        type_uri, title = "about:blank", HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


def _pointer(loc: Sequence[str | int]) -> str | None:
    if not loc or loc[0] != "body":
        return None
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc[1:]]
    return "#/" + "/".join(parts) if parts else "#"


def _json_position(body: Any, offset: int) -> dict[str, int]:
    """``line``, ``column`` (from 1) and ``offset`` of character ``offset`` in ``body``."""
    if not isinstance(body, str):
        return {"offset": offset}
    before = body[:offset]
    line = before.count("\n") + 1
    return {"line": line, "column": offset - (before.rfind("\n") + 1) + 1, "offset": offset}


def _invalid_json(error: Mapping[str, Any], body: Any) -> dict[str, Any]:
    # FastAPI puts the decoder's character offset in ``loc`` (["body", 12]); that is no
    # JSON Pointer, so it goes to ``offset`` (with line and column) instead.
    loc = error.get("loc", ())
    offset = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    position = _json_position(body, offset)
    reason = str(error.get("ctx", {}).get("error", "JSON decode error"))
    where = ", ".join(f"{name} {value}" for name, value in position.items())
    return {
        "loc": ["body"],
        "pointer": None,
        "msg": f"the body is not valid JSON: {reason} ({where})",
        "type": "json_invalid",
        **position,
    }


def not_utf8_error(exc: UnicodeDecodeError) -> dict[str, Any]:
    """The 422 field error of a body that is not UTF-8 (JSON must be, RFC 8259 8.1)."""
    return {
        "loc": ["body"],
        "pointer": None,
        "msg": f"the body is not valid JSON: it is not UTF-8 (byte offset {exc.start})",
        "type": "json_invalid",
        "offset": exc.start,
    }


def _field_errors(errors: Sequence[Any], body: Any = None) -> list[dict[str, Any]]:
    found = []
    for error in errors:
        if error.get("type") == "json_invalid":
            found.append(_invalid_json(error, body))
            continue
        loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
        found.append(
            {
                "loc": loc,
                "pointer": _pointer(loc),
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return found


def _summary(errors: list[dict[str, Any]], limit: int = 3) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}" for e in errors[:limit]
    ]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


_ERROR_STATUS: Final[Mapping[type[Exception], tuple[int, str | None]]] = {
    EventNotFoundError: (404, None),
    EventTooLargeError: (413, "event-too-large"),
    DuplicateEventError: (409, "duplicate-event"),
    IdempotencyConflictError: (409, "idempotency-conflict"),
    NotCancellableError: (409, "not-cancellable"),
    CancellationPendingError: (409, "cancellation-pending"),
    OutboxUnavailableError: (503, "outbox-unavailable"),
}


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem details; serve ``/problems/<kind>``."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(
            request,
            exc.status,
            exc.detail,
            kind=exc.kind,
            headers=exc.headers,
            **exc.extensions,
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 400 when the body cannot be decoded; a body that is not
            # UTF-8 is invalid JSON like any other, so it gets the same 422.
            errors = [not_utf8_error(exc.__cause__)]
            return problem_response(
                request, 422, _summary(errors), kind="validation-error", errors=errors
            )
        kind = "content-too-large" if exc.status_code == 413 else None
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem_response(request, exc.status_code, detail, kind=kind, headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc.errors(), exc.body)
        return problem_response(
            request,
            422,
            _summary(errors),
            kind="validation-error",
            errors=errors,
        )

    async def on_producer_error(request: Request, exc: Exception) -> JSONResponse:
        status, kind = next(
            (v for t, v in _ERROR_STATUS.items() if isinstance(exc, t)), (500, None)
        )
        headers = {"Retry-After": "5"} if status == 503 or kind == "cancellation-pending" else {}
        extensions: dict[str, Any] = {}
        if isinstance(exc, NotCancellableError):
            extensions["event_status"] = exc.status
        return problem_response(request, status, str(exc), kind=kind, headers=headers, **extensions)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "an unexpected error occurred; it was logged")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    for error_type in _ERROR_STATUS:
        app.add_exception_handler(error_type, on_producer_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.include_router(problem_types_router)


problem_types_router = APIRouter(tags=["problems"])


class ProblemType(BaseModel):
    """Description of one problem type."""

    type: str
    title: str
    description: str


@problem_types_router.get(
    "/problems/{kind}",
    summary="Describe a problem type",
    response_model=ProblemType,
    responses={404: {"description": "No such problem type", "model": ProblemDetails}},
)
async def describe_problem_type(kind: str, request: Request) -> ProblemType:
    """What a ``type`` of ``/problems/<kind>`` in an error response means."""
    if kind not in PROBLEM_TYPES:
        raise Problem(404, f"no problem type {kind!r}")
    title, description = PROBLEM_TYPES[kind]
    return ProblemType(type=f"/problems/{kind}", title=title, description=description)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem answers for ``statuses``."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "model": ValidationProblem if status == 422 else ProblemDetails,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
