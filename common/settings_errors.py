"""Invalid settings as one readable line that names the environment variables to fix.

pydantic reports a bad setting by field path (``email_retry.delayed_attempts``) with a
generic message; the operator set ``CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS`` (or
``CONSUMER_EMAIL_RETRY`` as JSON). :func:`describe_settings_error` maps each error of a
pydantic-settings class back to the variable, using the class's ``env_prefix``,
``env_nested_delimiter`` and aliases the way pydantic-settings reads them
(https://docs.pydantic.dev/latest/concepts/pydantic_settings/#parsing-environment-variable-values).
A settings group (a field typed as another ``BaseSettings`` class,
:mod:`common.settings_groups`) maps to the group's own variables (``CONSUMER_SMTP_PORT``).
pydantic-settings has no such reverse mapping, hence this module.
"""

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, get_args

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsError

from common.settings_groups import settings_group

__all__ = ["describe_settings_error"]

_SETTINGS_ERROR_FIELD: Final = re.compile(r'for field "(?P<field>[^"]+)"')
# Only snake_case words are rewritten in messages: they are field names, never prose.
_IDENTIFIER: Final = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_MAX_INPUT_CHARS: Final = 60
# Values of fields named like these are never echoed, whatever their type.
_SECRET_NAME: Final = re.compile(r"password|secret|token|credential|connection_string|(^|_)key$")
_URL_PASSWORD: Final = re.compile(r"//([^:/@]+):[^@]*@")

Location = tuple[int | str, ...]


def describe_settings_error(
    error: ValidationError | SettingsError,
    settings: type[BaseSettings],
    *,
    environ: Mapping[str, str] | None = None,
    limit: int = 3,
) -> str:
    """One line naming each bad environment variable and what is wrong with it.

    Example: ``PRODUCER_PORT: Input should be a valid integer, unable to parse string as
    an integer (got 'abc')``; with several errors ``3 errors: A: ...; B: ...; C: ...``,
    the first ``limit`` shown and the rest counted (``and 2 more``). A model-level check
    (no field) keeps its message with field names replaced by their variables. Values of
    secret fields are never shown.

    Args:
        error: What constructing ``settings`` raised: a ``ValidationError``, or the
            ``SettingsError`` pydantic-settings raises for a value it cannot decode (a
            nested field whose variable is not JSON).
        settings: The settings class that raised it.
        environ: The environment it read (default ``os.environ``); decides whether a
            nested field was set as ``PREFIX_FIELD__SUB`` or as JSON in ``PREFIX_FIELD``.
        limit: Most errors spelled out.

    Returns:
        The description, without a trailing newline or a program prefix.
    """
    env = os.environ if environ is None else environ
    if isinstance(error, SettingsError):
        problems = [_settings_error_problem(error, settings, env)]
    else:
        problems = []
        for detail in error.errors(include_url=False):
            problem = _problem(detail, settings, env)
            if problem not in problems:  # union members can repeat one location's error
                problems.append(problem)
    if len(problems) == 1:
        return problems[0]
    shown = problems[:limit]
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} errors: {'; '.join(shown)}{more}"


def _problem(detail: ErrorDetails, settings: type[BaseSettings], env: Mapping[str, str]) -> str:
    settings, loc = _owner(settings, tuple(detail["loc"]))
    target = _variable(settings, loc, env)
    message = _message(detail)
    field = target.field
    if not loc or (field is not None and _is_model(field.annotation) and not target.rest):
        # A model-level check: its message names fields of the model at ``loc``.
        message = _rename_fields(message, settings, loc, env)
    if detail["type"] != "missing" and _showable(detail.get("input"), target):
        message = f"{message} (got {_short(detail['input'])})"
    where = target.variable + _path(target.rest)
    return f"{where}: {message}" if where else message


def _settings_error_problem(
    error: SettingsError, settings: type[BaseSettings], env: Mapping[str, str]
) -> str:
    match = _SETTINGS_ERROR_FIELD.search(str(error))
    cause = error.__cause__
    if isinstance(cause, json.JSONDecodeError):
        reason = f"not valid JSON ({cause.msg} at character {cause.pos})"
    else:
        reason = str(cause) if cause is not None else str(error)
    if match is None:
        return reason
    owner, loc = _owner(settings, (match["field"],))
    variable = _variable(owner, loc, env).variable
    return f"{variable}: {reason}" if variable else reason


def _owner(settings: type[BaseSettings], loc: Location) -> tuple[type[BaseSettings], Location]:
    """The settings class whose variables ``loc`` names, and ``loc`` relative to it: a
    settings group's fields are its own class's variables."""
    while loc and (found := _field(settings, loc[0])) is not None:
        group = settings_group(found[1].annotation)
        if group is None:
            break
        settings, loc = group, loc[1:]
    return settings, loc


def _message(detail: ErrorDetails) -> str:
    if detail["type"] == "missing":
        return "required, not set"
    context = detail.get("ctx") or {}
    if detail["type"] in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])  # without pydantic's "Value error, " prefix
    return detail["msg"]


@dataclass(frozen=True)
class _Target:
    """Where an error points: the variable, the rest of ``loc`` below it (a JSON key or
    list index), and the deepest field of ``loc`` (name and info) if any."""

    variable: str
    rest: Location
    name: str | None = None
    field: FieldInfo | None = None


def _variable(settings: type[BaseSettings], loc: Location, env: Mapping[str, str]) -> _Target:
    """The variable the user set for the field at ``loc``.

    The nested form (``PREFIX_A__B``) is preferred when it is in ``env``; otherwise the
    longest set ancestor (``PREFIX_A`` holding JSON), then the nested form.
    """
    names: list[str] = []
    field: FieldInfo | None = None
    model: type[BaseModel] | None = settings
    for part in loc:
        found = _field(model, part) if model is not None else None
        if found is None:
            break
        name, field = found
        names.append(name)
        model = _model_type(field.annotation)
    if not names:
        return _Target("", loc)
    config = settings.model_config
    top = settings.model_fields[names[0]]
    base = top.alias if isinstance(top.alias, str) else f"{config.get('env_prefix', '')}{names[0]}"
    delimiter = config.get("env_nested_delimiter")
    depths = range(len(names), 0, -1) if delimiter else range(1, 0, -1)
    candidates = [
        (base + "".join(f"{delimiter}{name}" for name in names[1:depth]), depth) for depth in depths
    ]
    case_sensitive = bool(config.get("case_sensitive", False))
    present = set(env) if case_sensitive else {key.upper() for key in env}
    chosen, depth = next(
        (
            (name, depth)
            for name, depth in candidates
            if (name if case_sensitive else name.upper()) in present
        ),
        candidates[0],
    )
    variable = chosen if case_sensitive else chosen.upper()
    return _Target(variable, loc[depth:], names[-1], field)


def _field(model: type[BaseModel], part: int | str) -> tuple[str, FieldInfo] | None:
    if not isinstance(part, str):
        return None
    for name, info in model.model_fields.items():
        if part in (name, info.alias, info.validation_alias):
            return name, info
    return None


def _model_type(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``Model`` or ``Model | None``), if any."""
    if _is_model(annotation):
        model: type[BaseModel] = annotation
        return model
    models = [arg for arg in get_args(annotation) if _is_model(arg)]
    return models[0] if len(models) == 1 else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _rename_fields(
    message: str, settings: type[BaseSettings], loc: Location, env: Mapping[str, str]
) -> str:
    """Replace the field names of the model at ``loc`` in ``message`` with their variables.

    Below the top level only when the user set that model's fields as nested variables
    (``PREFIX_A__B``); set as JSON in ``PREFIX_A``, its keys are the names they know.
    """
    model: type[BaseModel] | None = settings
    for part in loc:
        found = _field(model, part) if model is not None else None
        model = _model_type(found[1].annotation) if found is not None else None
    if model is None:
        return message
    fields = model.model_fields
    if loc:
        delimiter = settings.model_config.get("env_nested_delimiter")
        nested = f"{_variable(settings, loc, {}).variable}{delimiter}".upper()
        if not delimiter or not any(key.upper().startswith(nested) for key in env):
            return message

    def variable(match: re.Match[str]) -> str:
        name = match[0]
        return _variable(settings, (*loc, name), {}).variable if name in fields else name

    return _IDENTIFIER.sub(variable, message)


def _showable(value: object, target: _Target) -> bool:
    if target.field is None or target.name is None:
        return False
    if not isinstance(value, str | int | float | timedelta):
        return False  # model-level inputs are whole dicts, secrets included
    secret = (SecretStr, SecretBytes)
    annotation = target.field.annotation
    if annotation in secret or any(arg in secret for arg in get_args(annotation)):
        return False
    return _SECRET_NAME.search(target.name) is None


def _short(value: object) -> str:
    if isinstance(value, timedelta):  # a Duration fails its bounds after parsing
        return f"{value.total_seconds():g} s"
    text = _URL_PASSWORD.sub(r"//\1:***@", repr(value))
    return text if len(text) <= _MAX_INPUT_CHARS else f"{text[: _MAX_INPUT_CHARS - 4]}...'"


def _path(rest: Sequence[int | str]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in rest)
