"""Breaking-change detection between a released JSON Schema and the current one.

A change is *compatible* when every message valid under the released schema is still
valid under the current one, so consumers built from the current models still read what
older producers wrote (and, with tolerant readers, the reverse: see ``docs/contracts.md``).
Reported as breaking:

* a field removed, or a new required field, or an optional field made required;
* a type changed or narrowed (``integer`` -> ``number`` is a widening, allowed);
* an enumeration value removed, a constant changed, a value newly restricted to a
  constant or enumeration;
* a constraint tightened: ``minLength``/``minimum``/``minItems``/``minProperties``
  raised, ``maxLength``/``maximum``/``maxItems``/``maxProperties`` lowered or added,
  ``pattern``/``format``/``multipleOf`` added or changed, ``uniqueItems`` added,
  ``additionalProperties`` closed;
* a released event version no longer present;
* an ``allOf``, ``not``, ``if``/``then``/``else``, ``dependentRequired`` or
  ``dependentSchemas`` added or changed: these are not analysed, so any change to them is
  reported for a person to judge (and, if it is a correction, to acknowledge: see
  :mod:`contracts.artefacts`).

Adding optional fields, enumeration values, new event types or new versions is
compatible. The schemas compared are the Draft 2020-12 documents of
:mod:`contracts.schema_export`; ``$ref`` within a document is followed.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final

_UPPER_BOUNDS: Final = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER_BOUNDS: Final = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_EXACT: Final = ("pattern", "format", "multipleOf")
_BRANCH_KEYWORDS: Final = ("anyOf", "oneOf")
_UNANALYSED: Final = ("allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas")
_ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)


@dataclass(frozen=True)
class Problem:
    """One breaking change.

    Attributes:
        schema: Which schema, e.g. ``io.servicebus-events.audit.recorded v1``.
        path: Dotted field path inside the message, e.g. ``data.actor.id`` (empty: the
            whole message).
        message: What changed, e.g. ``field removed``.
    """

    schema: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.schema}: {self.path or '(message)'}: {self.message}"


def schema_label(path: PurePosixPath) -> str:
    """``jsonschema/<type>/<version>.json`` -> ``<type> v<version>``."""
    return f"{path.parent.name} v{path.stem}" if path.parent.name else str(path)


def find_breaking_changes(
    released: Mapping[PurePosixPath, dict[str, Any]],
    current: Mapping[PurePosixPath, dict[str, Any]],
) -> list[Problem]:
    """Compare each released schema with the current schema of the same type and version.

    Args:
        released: Released schemas by path (``jsonschema/<type>/<version>.json``).
        current: Current schemas by the same paths. Paths only here are new and fine.

    Returns:
        Every breaking change found, in a stable order; empty when compatible.
    """
    problems: list[Problem] = []
    for path in sorted(released):
        label = schema_label(path)
        if path not in current:
            problems.append(
                Problem(
                    label,
                    "",
                    "released version is no longer supported; readers must keep it until no "
                    "such message can remain in a queue or dead-letter queue",
                )
            )
            continue
        for where, message in compare_schemas(released[path], current[path]):
            problems.append(Problem(label, where, message))
    return problems


def compare_schemas(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    """Breaking changes from ``old`` to ``new`` as ``(field path, message)`` pairs."""
    return list(_Comparison(old, new).compare(old, new, ""))


class _Comparison:
    def __init__(self, old_root: dict[str, Any], new_root: dict[str, Any]) -> None:
        self._old_root = old_root
        self._new_root = new_root

    def compare(self, old: Any, new: Any, path: str) -> Iterator[tuple[str, str]]:
        old_branches = _branches(old, self._old_root)
        new_branches = _branches(new, self._new_root)
        if len(old_branches) == 1 and len(new_branches) == 1:
            yield from self._compare_one(old_branches[0], new_branches[0], path)
            return
        for branch in old_branches:
            candidates = [n for n in new_branches if _accepts_kinds(n, branch)]
            if not candidates:
                yield path, f"no longer accepts {_describe(branch)}"
                continue
            outcomes = [list(self._compare_one(branch, n, path)) for n in candidates]
            yield from min(outcomes, key=len)

    def _compare_one(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> Iterator[tuple[str, str]]:
        if _is_any(new):
            return
        if _is_any(old):
            yield path, f"narrowed from any value to {_describe(new)}"
            return
        if not _accepts_kinds(new, old):
            yield path, f"type changed from {_describe(old)} to {_describe(new)}"
            return
        yield from _compare_values(old, new, path)
        yield from _compare_bounds(old, new, path)
        if "items" in old or "items" in new:
            yield from self.compare(old.get("items", {}), new.get("items", {}), f"{path}[]")
        if _kinds(old) & {"object"}:
            yield from self._compare_object(old, new, path)

    def _compare_object(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> Iterator[tuple[str, str]]:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, schema in old_props.items():
            where = _join(path, name)
            if name not in new_props:
                yield where, "field removed"
            else:
                yield from self.compare(schema, new_props[name], where)
        for name in sorted(new_required - old_required):
            message = (
                "optional field became required" if name in old_props else "new required field"
            )
            yield _join(path, name), message
        old_extra, new_extra = (
            old.get("additionalProperties", True),
            new.get("additionalProperties", True),
        )
        if new_extra is False and old_extra is not False:
            yield path, "additional properties no longer accepted"
        elif isinstance(old_extra, dict) and isinstance(new_extra, dict):
            yield from self.compare(old_extra, new_extra, f"{path}{{*}}")


def _compare_values(
    old: dict[str, Any], new: dict[str, Any], path: str
) -> Iterator[tuple[str, str]]:
    old_values = _allowed_values(old)
    new_values = _allowed_values(new)
    if new_values is None:
        return
    if old_values is None:
        yield path, f"narrowed to {_values_text(new_values)}"
        return
    removed = [value for value in old_values if value not in new_values]
    if removed and "const" in old and "const" in new:
        yield (
            path,
            f"constant changed from {_values_text(old_values)} to {_values_text(new_values)}",
        )
    elif removed:
        yield path, f"enumeration value(s) removed: {_values_text(removed)}"


def _compare_bounds(
    old: dict[str, Any], new: dict[str, Any], path: str
) -> Iterator[tuple[str, str]]:
    for keyword in _UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            yield path, _tightened(keyword, old.get(keyword), new[keyword])
    for keyword in _LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            yield path, _tightened(keyword, old.get(keyword), new[keyword])
    for keyword in _EXACT:
        if keyword in new and new[keyword] != old.get(keyword):
            yield path, _tightened(keyword, old.get(keyword), new[keyword])
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        yield path, "uniqueItems added"
    for keyword in _UNANALYSED:
        if keyword in new and new[keyword] != old.get(keyword):
            change = "changed" if keyword in old else "added"
            yield path, f"{keyword} {change} (not analysed: may refuse messages valid before)"


def _tightened(keyword: str, old: object, new: object) -> str:
    if old is None:
        return f"{keyword} added ({new!r})"
    return f"{keyword} changed from {old!r} to {new!r}"


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 50:
        target: Any = root
        for part in schema["$ref"].removeprefix("#").strip("/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")] if part else target
        schema = target
        seen += 1
    return schema


def _branches(schema: Any, root: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema, root)
    if schema is True or schema is None:
        return [{}]
    if schema is False:
        return [{"not": {}}]
    for keyword in _BRANCH_KEYWORDS:
        if keyword in schema:
            base = {k: v for k, v in schema.items() if k not in _BRANCH_KEYWORDS}
            return [
                {**base, **branch} for item in schema[keyword] for branch in _branches(item, root)
            ]
    return [schema]


def _kinds(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    values = _allowed_values(schema)
    if values is not None:
        return {_json_type(value) for value in values}
    if "properties" in schema or "additionalProperties" in schema:
        return {"object"}
    if "items" in schema:
        return {"array"}
    return set()


def _accepts_kinds(new: dict[str, Any], old: dict[str, Any]) -> bool:
    if _is_any(new):
        return True
    new_kinds, old_kinds = _kinds(new), _kinds(old)
    if not old_kinds:
        return not new_kinds
    return all(
        kind in new_kinds or (kind == "integer" and "number" in new_kinds) for kind in old_kinds
    )


def _is_any(schema: dict[str, Any]) -> bool:
    return not (set(schema) - _ANNOTATIONS)


def _allowed_values(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _describe(schema: dict[str, Any]) -> str:
    kinds = sorted(_kinds(schema)) or ["any value"]
    text = " or ".join(kinds)
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


def _values_text(values: list[Any]) -> str:
    return ", ".join(repr(value) for value in values)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
