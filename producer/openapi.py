"""The OpenAPI document, made to say what the producer really answers.

FastAPI documents every error under ``application/json`` and adds its own 422 model
(``HTTPValidationError``) to each route with parameters; the producer answers every error
as ``application/problem+json`` (``producer.problems``). :func:`install_openapi` rewrites
the generated document once: problem responses are ``application/problem+json`` only,
422 is :class:`~producer.problems.ValidationProblem`, and every operation lists 431
(``producer.limits.HeaderLimitMiddleware`` guards every route).
"""

from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI

from producer.problems import PROBLEM_JSON

_REF: Final = "#/components/schemas/"
_PROBLEM: Final = _REF + "ProblemDetails"
_VALIDATION_PROBLEM: Final = _REF + "ValidationProblem"
_FASTAPI_422: Final = _REF + "HTTPValidationError"
_PROBLEM_SCHEMAS: Final = frozenset({_PROBLEM, _VALIDATION_PROBLEM, _FASTAPI_422})
_EVERY_ROUTE: Final = (431,)
"""Statuses a middleware may answer on any route."""


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the rewritten document (built once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _rewrite(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _rewrite(document: dict[str, Any]) -> None:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for code in _EVERY_ROUTE:
                responses.setdefault(
                    str(code), {"description": HTTPStatus(code).phrase, "content": {}}
                )
            for status, response in responses.items():
                if status[0] in "45":
                    _as_problem(response)
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _as_problem(response: dict[str, Any]) -> None:
    """Document ``response`` as a problem document, unless it is another kind of body."""
    content: dict[str, Any] = response.setdefault("content", {})
    refs = {media.get("schema", {}).get("$ref") for media in content.values()} - {None}
    if refs - _PROBLEM_SCHEMAS:
        return  # e.g. /readyz's 503 report
    ref = _PROBLEM if refs <= {_PROBLEM} else _VALIDATION_PROBLEM
    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": ref}}}
