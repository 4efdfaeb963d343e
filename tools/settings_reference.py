"""Write ``docs/settings.md``, the reference of every environment variable the apps read.

``python -m tools.settings_reference`` regenerates it from the pydantic-settings classes;
``python -m tools.settings_reference --check`` exits 1 when the file is stale (the test
``tests/test_settings_reference.py`` does the same inside ``make test``).

Each row comes from the class itself: the variable is the ``env_prefix`` plus the field
name upper-cased (nested model fields joined with ``env_nested_delimiter``; a settings
group, a field typed as another ``BaseSettings`` class (:mod:`common.settings_groups`),
gets its own section with that class's prefix), the type and
bounds from the annotation and its ``annotated_types`` constraints, the default from the
field (secrets never shown), and the meaning from ``Field(description=...)`` or else the
Google-style ``Attributes:`` section of the class docstring that declares the field
(parsed with ``docstring_parser``), as pydantic-settings documents
(https://docs.pydantic.dev/latest/concepts/pydantic_settings/#parsing-environment-variable-values).
"""

import argparse
import ast
import importlib
import re
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import docstring_parser
from pydantic import BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode

from common.settings_groups import settings_group, settings_groups

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "settings.md"
REGENERATE = "python -m tools.settings_reference"

COMPONENTS: tuple[tuple[str, str], ...] = (
    ("Producer", "producer.settings:ProducerSettings"),
    ("Consumer", "consumer.settings:ConsumerSettings"),
    ("Console", "console.settings:ConsoleSettings"),
)
"""Title and ``module:Class`` of each process's settings, in the order they are shown."""

PACKAGES = ("producer", "consumer", "console", "common", "contracts", "emulator", "tools")
"""Where :func:`settings_classes` looks for other ``BaseSettings`` subclasses."""

OTHER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    (
        "AZURE_CLIENT_ID",
        "both",
        "Client id of the user-assigned managed identity `DefaultAzureCredential` signs in "
        "with (Container Apps sets it). Leave it unset on a developer machine so that the "
        "Azure CLI sign-in is used "
        "(https://learn.microsoft.com/python/api/azure-identity/azure.identity.defaultazurecredential).",
    ),
    (
        "OTEL_TRACES_EXPORTER",
        "both",
        "The standard OpenTelemetry choice of exporter (`console`, `otlp` or `none`), used "
        "when `*_TELEMETRY_EXPORTER` is `auto`; the order in which the variables are "
        "considered is in the docstring of `common/telemetry.py`.",
    ),
    (
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "both",
        "Export traces, metrics and logs to Application Insights (`azure-monitor-opentelemetry`) "
        "when `*_TELEMETRY_EXPORTER` is `auto`.",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "both",
        "Export over OTLP/HTTP when `*_TELEMETRY_EXPORTER` is `auto`; the other standard "
        "`OTEL_EXPORTER_OTLP_*` variables apply.",
    ),
    (
        "OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG",
        "both",
        "The standard sampler choice (default `parentbased_always_on`; e.g. "
        "`parentbased_traceidratio` with a fraction from 0 to 1); a bad value is named in one "
        "WARNING and the default used.",
    ),
    (
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_SCHEDULE_DELAY",
        "both",
        "Batch span export: spans leave in batches of up to 512 from a queue of 8,192 "
        "unless these standard variables say otherwise, at least every 5 s.",
    ),
    ("OTEL_SDK_DISABLED", "both", "`true` turns all telemetry export off."),
    (
        "OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES",
        "both",
        "Override the resource attributes the apps set (`service.name` is `producer` or "
        "`consumer`).",
    ),
)
"""Variables read outside the settings classes: (names, component, meaning)."""

_RST_LITERAL = re.compile(r"``(.+?)``")


@dataclass
class Row:
    """One environment variable of the reference."""

    variable: str
    type: str
    default: str
    meaning: str


@dataclass
class Group:
    """The variables of one class that declares fields (the settings class or a mixin)."""

    title: str
    summary: str
    rows: list[Row] = field(default_factory=list)


@dataclass
class Component:
    """One process's settings: its groups and the other classes reading its variables."""

    title: str
    settings: type[BaseSettings]
    groups: list[Group]
    also_read_by: list[type[BaseSettings]]


def load(target: str) -> type[BaseSettings]:
    """Import ``module:Class``; raises ``TypeError`` unless it is a ``BaseSettings``."""
    module_name, _, class_name = target.partition(":")
    loaded = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(loaded, type) and issubclass(loaded, BaseSettings)):
        raise TypeError(f"{target} is not a pydantic-settings class")
    return loaded


def settings_classes(root: Path = ROOT) -> list[type[BaseSettings]]:
    """Every class in :data:`PACKAGES` that names ``BaseSettings`` among its bases.

    Found by parsing the sources (no module is imported just to look), then imported.
    """
    found: list[type[BaseSettings]] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and any(
                    isinstance(base, ast.Name) and base.id == "BaseSettings" for base in node.bases
                ):
                    found.append(load(f"{module}:{node.name}"))
    return found


def _plain(text: str) -> str:
    """Docstring prose as one Markdown table cell."""
    text = _RST_LITERAL.sub(r"`\1`", " ".join(text.split()))
    return text.replace("|", "\\|")


def _docstring_attributes(model: type[BaseModel]) -> dict[str, str]:
    """``Attributes:`` entries of ``model``'s own docstring; ``a / b: ...`` documents both."""
    parsed = docstring_parser.parse(model.__doc__ or "", docstring_parser.DocstringStyle.GOOGLE)
    meanings: dict[str, str] = {}
    for param in parsed.params:
        for name in param.arg_name.split("/"):
            if name.strip().isidentifier():
                meanings[name.strip()] = _plain(param.description or "")
    return meanings


def _summary(model: type[BaseModel]) -> str:
    parsed = docstring_parser.parse(model.__doc__ or "", docstring_parser.DocstringStyle.GOOGLE)
    return _plain(parsed.short_description or "")


def _declaring_class(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class in ``model``'s MRO whose own annotations declare field ``name``."""
    for klass in model.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            return klass
    return model


def _without_none(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional = len(args) < len(get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), optional
    return annotation, False


def _quantity(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(metadata: Sequence[Any]) -> str:
    low = high = ""
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"≥ {_quantity(item.ge)}"
        elif isinstance(item, annotated_types.Gt):
            low = f"> {_quantity(item.gt)}"
        elif isinstance(item, annotated_types.Le):
            high = f"≤ {_quantity(item.le)}"
        elif isinstance(item, annotated_types.Lt):
            high = f"< {_quantity(item.lt)}"
        elif isinstance(item, annotated_types.MaxLen):
            high = f"≤ {item.max_length} characters"
    return ", ".join(part for part in (low, high) if part)


def _type_name(annotation: Any, metadata: Sequence[Any]) -> str:
    inner, _ = _without_none(annotation)
    origin = get_origin(inner)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(inner))
    if origin in (tuple, list, set, frozenset):
        split = any(item is NoDecode or isinstance(item, NoDecode) for item in metadata)
        return "list (comma-separated or JSON)" if split else "list (JSON)"
    if isinstance(inner, type):
        if issubclass(inner, SecretStr):
            return "secret string"
        if issubclass(inner, bool):
            return "boolean"
        if issubclass(inner, int):
            return "integer"
        if issubclass(inner, float):
            return "number"
        if issubclass(inner, timedelta):
            return "duration (seconds or ISO 8601)"
        if issubclass(inner, Path):
            return "path"
        if issubclass(inner, Enum):
            return " \\| ".join(f"`{member.value}`" for member in inner)
        if issubclass(inner, BaseModel):
            return "JSON object"
        if issubclass(inner, str):
            return "string"
    if "Url" in getattr(inner, "__name__", ""):
        return "URL"
    return "string"


def _default(info: FieldInfo) -> str:
    inner, _ = _without_none(info.annotation)
    if info.default_factory is not None:
        return "computed per process"
    value = info.default
    if value is PydanticUndefined:
        return "**required**"
    if value is None or value == ():
        return "unset"
    if isinstance(value, SecretStr) or (isinstance(inner, type) and issubclass(inner, SecretStr)):
        return "(secret, not shown)"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        return f"`{TypeAdapter(timedelta).dump_python(value, mode='json')}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _env_names(model: type[BaseSettings], name: str, info: FieldInfo) -> str:
    alias = info.validation_alias or info.alias
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(model.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def _rows(model: type[BaseSettings], declared_by: type[BaseModel]) -> Iterator[Row]:
    delimiter = model.model_config.get("env_nested_delimiter")
    for name, info in model.model_fields.items():
        group = settings_group(info.annotation)
        if _declaring_class(model, name) is not declared_by or group is not None:
            continue  # a group's variables are its own section's
        meaning = info.description or _docstring_attributes(declared_by).get(name, "")
        variable = _env_names(model, name, info)
        type_name = _type_name(info.annotation, info.metadata)
        bounds = _bounds(info.metadata)
        yield Row(
            variable=f"`{variable}`",
            type=f"{type_name}, {bounds}" if bounds else type_name,
            default=_default(info),
            meaning=_plain(meaning) if info.description else meaning,
        )
        nested, _ = _without_none(info.annotation)
        if delimiter and isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from _nested_rows(f"{variable}{delimiter}", nested)


def _nested_rows(prefix: str, model: type[BaseModel]) -> Iterator[Row]:
    meanings = _docstring_attributes(model)
    for name, info in model.model_fields.items():
        bounds = _bounds(info.metadata)
        type_name = _type_name(info.annotation, info.metadata)
        yield Row(
            variable=f"`{prefix}{name.upper()}`",
            type=f"{type_name}, {bounds}" if bounds else type_name,
            default=_default(info),
            meaning=_plain(info.description) if info.description else meanings.get(name, ""),
        )


def describe(
    title: str, settings: type[BaseSettings], others: Sequence[type[BaseSettings]]
) -> Component:
    """The reference of one process's settings class."""
    declaring: list[type[BaseModel]] = []
    for name in settings.model_fields:
        klass = _declaring_class(settings, name)
        if klass not in declaring:
            declaring.append(klass)
    # The class's own fields first, then each mixin's in MRO order (connection, telemetry).
    declaring.sort(key=lambda klass: -1 if klass is settings else settings.__mro__.index(klass))
    groups: list[Group] = []
    for klass in declaring:
        groups.append(_group(settings, klass))
        # Each settings group right after the class that declares it.
        for name, group in settings_groups(settings).items():
            if _declaring_class(settings, name) is klass:
                groups.append(_group(group, group))
    prefix = settings.model_config.get("env_prefix")
    also = [
        other
        for other in others
        if other is not settings and other.model_config.get("env_prefix") == prefix
    ]
    return Component(title, settings, groups, also)


def _group(settings: type[BaseSettings], klass: type[BaseModel]) -> Group:
    return Group(
        title=f"`{klass.__qualname__}` (`{klass.__module__}`)",
        summary=_summary(klass),
        rows=list(_rows(settings, klass)),
    )


def variables(settings: type[BaseSettings]) -> list[str]:
    """The top-level variables ``settings`` reads itself (a group's are the group class's)."""
    return [
        _env_names(settings, name, info)
        for name, info in settings.model_fields.items()
        if settings_group(info.annotation) is None
    ]


def components() -> list[Component]:
    """Every component of :data:`COMPONENTS`, with the other settings classes sharing its
    prefix.

    Raises:
        ValueError: a ``BaseSettings`` class in the sources reads a variable that no
            component documents (add it to :data:`COMPONENTS`).
    """
    found = settings_classes()
    described = [describe(title, load(target), found) for title, target in COMPONENTS]
    documented = {row.variable for c in described for g in c.groups for row in g.rows}
    for other in found:
        for variable in variables(other):
            if f"`{variable}`" not in documented:
                raise ValueError(
                    f"{other.__module__}.{other.__qualname__} reads "
                    f"{variable}, which no component in COMPONENTS covers"
                )
    return described


def undocumented(reference: Sequence[Component]) -> list[str]:
    """Variables whose meaning neither a ``Field`` description nor a docstring gives."""
    return [
        row.variable.strip("`")
        for component in reference
        for group in component.groups
        for row in group.rows
        if not row.meaning
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    # Hand-written rather than tabulate: tabulate pads columns to equal width, so one longer
    # cell would rewrite every line of the file and bury the real change in the diff.
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render(reference: Sequence[Component]) -> str:
    """The Markdown text of ``docs/settings.md``."""
    lines = [
        "# Settings reference",
        "",
        f"<!-- Generated by `{REGENERATE}` from the settings classes; do not edit. -->",
        "",
        "Every process reads its settings once, at start, from environment variables with "
        "its own prefix (pydantic-settings; names are case-insensitive; an unknown "
        "`PRODUCER_*` or `CONSUMER_*` variable is ignored, so check the spelling here). "
        "Booleans are `true`/`false` (or `1`/`0`); durations are seconds (`30`, `0.5`) or "
        'ISO 8601 (`PT30S`, `P7D`); list values are JSON (`["a","b"]`) or, where '
        "the type says so, comma-separated; nested values are a whole JSON object or one "
        "field at a time with `__`. An invalid value stops the process at start with one "
        "line naming the setting and a non-zero exit code.",
        "",
        f"This file is generated: after changing a settings class run `{REGENERATE}`; "
        "`make test` fails while it is stale.",
        "",
    ]
    for component in reference:
        settings = component.settings
        prefix = settings.model_config.get("env_prefix", "")
        lines += [f"## {component.title} (`{prefix}*`)", ""]
        modules = sorted({other.__module__ for other in component.also_read_by})
        if modules:
            named = ", ".join(f"`{module}`" for module in modules)
            lines += [
                f"Some of these variables are also read, with the same meaning, by {named}.",
                "",
            ]
        for group in component.groups:
            lines += [f"### {group.title}", ""]
            if group.summary:
                lines += [group.summary, ""]
            rows = [
                (r.variable, r.type, r.default, r.meaning or "**undocumented**") for r in group.rows
            ]
            lines += [*_table(("variable", "type", "default", "meaning"), rows), ""]
    lines += [
        "## Other variables",
        "",
        "Read by libraries or by the telemetry set-up (`common/telemetry.py`), not by the "
        "settings classes.",
        "",
    ]
    other_rows = [
        (", ".join(f"`{name.strip()}`" for name in names.split(",")), who, meaning)
        for names, who, meaning in OTHER_VARIABLES
    ]
    lines += _table(("variable", "read by", "meaning"), other_rows)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` compare) ``docs/settings.md``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.settings_reference", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs instead of writing it"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: docs/settings.md")
    args = parser.parse_args(argv)
    try:
        reference = components()
    except ValueError as exc:
        print(f"settings_reference: error: {exc}", file=sys.stderr)
        return 1
    text = render(reference)
    for variable in undocumented(reference):
        print(f"settings_reference: warning: {variable} has no description", file=sys.stderr)
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"settings_reference: {output} is stale; run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
