"""The generated files, kept in the repository: what they should contain, writing, checking.

Paths are relative to the repository root:

* ``schemas/jsonschema/<type>/<version>.json``: JSON Schema per event type and version;
* ``schemas/asyncapi.json``: the AsyncAPI 3.0 document;
* ``docs/contracts.md``: only the event catalogue between its markers;
* ``schemas/released/jsonschema/...``: snapshots of released schemas, written only by
  :func:`release` and read by the breaking-change gate;
* ``schemas/released/acknowledged.json`` (hand-written, optional): gate findings that are
  *corrections*, not breaking changes: the schema now states a rule the released models
  already enforced, so no message written through them, and none their readers accepted,
  is refused. Each entry gives the reason and the exact gate lines; :func:`release`
  removes the file, since the snapshots then hold the corrected schemas.
"""

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from contracts.asyncapi import build_document
from contracts.catalogue import render_catalogue, splice
from contracts.compat import Problem, find_breaking_changes
from contracts.schema_export import all_schemas, render_json

SCHEMAS_DIR: Final = PurePosixPath("schemas")
JSONSCHEMA_DIR: Final = SCHEMAS_DIR / "jsonschema"
ASYNCAPI_FILE: Final = SCHEMAS_DIR / "asyncapi.json"
RELEASED_DIR: Final = SCHEMAS_DIR / "released"
ACKNOWLEDGED_FILE: Final = RELEASED_DIR / "acknowledged.json"
CONTRACTS_DOC: Final = PurePosixPath("docs", "contracts.md")


def expected_files(root: Path) -> dict[PurePosixPath, str]:
    """Every generated file and its exact expected text.

    Args:
        root: Repository root; ``docs/contracts.md`` is read from it (the hand-written
            parts are kept, the catalogue section is regenerated).

    Raises:
        FileNotFoundError: ``docs/contracts.md`` is missing.
        contracts.catalogue.MissingMarkers: it has no catalogue markers.
    """
    files = {SCHEMAS_DIR / path: render_json(schema) for path, schema in all_schemas().items()}
    files[ASYNCAPI_FILE] = render_json(build_document())
    doc = (root / CONTRACTS_DOC).read_text(encoding="utf-8")
    files[CONTRACTS_DOC] = splice(doc, render_catalogue())
    return files


def generate(root: Path) -> list[PurePosixPath]:
    """Write every generated file that differs; delete schemas no longer generated.

    Returns:
        The paths written or deleted, sorted.
    """
    changed = []
    expected = expected_files(root)
    for path, text in expected.items():
        target = root / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in _files_under(root, JSONSCHEMA_DIR):
        if path not in expected:
            (root / path).unlink()
            changed.append(path)
    return sorted(changed)


def stale_files(root: Path) -> list[str]:
    """One line per generated file that is missing, outdated or no longer generated."""
    problems = []
    expected = expected_files(root)
    for path, text in sorted(expected.items()):
        target = root / path
        if not target.is_file():
            problems.append(f"{path}: missing")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: out of date")
    for path in _files_under(root, JSONSCHEMA_DIR):
        if path not in expected:
            problems.append(f"{path}: no longer generated")
    return problems


def released_schemas(root: Path) -> dict[PurePosixPath, dict[str, Any]]:
    """Released snapshots below ``schemas/released/``, keyed like ``jsonschema/<t>/<v>.json``."""
    return _load_schemas(root / RELEASED_DIR)


def load_schema_dir(directory: Path) -> dict[PurePosixPath, dict[str, Any]]:
    """Schemas below ``directory`` (which holds ``jsonschema/``), keyed by relative path."""
    return _load_schemas(directory)


@dataclass(frozen=True)
class GateResult:
    """What the gate found.

    Attributes:
        problems: Breaking changes not acknowledged, then acknowledgements that match no
            finding any more (stale entries must be removed, so the file stays true).
        acknowledged: Findings acknowledged as corrections, with their reasons.
    """

    problems: list[Problem]
    acknowledged: list[tuple[Problem, str]]


def acknowledged_changes(root: Path) -> dict[str, str]:
    """Gate lines acknowledged as corrections -> why, from :data:`ACKNOWLEDGED_FILE`.

    The file holds ``{"acknowledged": [{"reason": "...", "problems": ["<gate line>",
    ...]}, ...]}``; absent means none.

    Raises:
        ValueError: the file is not JSON of that shape (the message names the file).
    """
    path = root / ACKNOWLEDGED_FILE
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ACKNOWLEDGED_FILE}: not valid JSON ({exc})") from None
    entries = document.get("acknowledged") if isinstance(document, dict) else None
    shape = 'expected {"acknowledged": [{"reason": "...", "problems": ["..."]}]}'
    if not isinstance(entries, list):
        raise ValueError(f"{ACKNOWLEDGED_FILE}: {shape}")
    changes: dict[str, str] = {}
    for index, entry in enumerate(entries):
        reason = entry.get("reason") if isinstance(entry, dict) else None
        lines = entry.get("problems") if isinstance(entry, dict) else None
        if not (isinstance(reason, str) and reason.strip() and isinstance(lines, list)) or not (
            lines and all(isinstance(line, str) for line in lines)
        ):
            raise ValueError(f"{ACKNOWLEDGED_FILE}: entry {index}: {shape}")
        changes.update(dict.fromkeys(lines, reason))
    return changes


def gate(root: Path, current_dir: Path | None = None) -> GateResult:
    """Breaking changes of the current schemas against the released snapshots.

    Args:
        root: Repository root (snapshots are read from ``schemas/released/``, and
            acknowledged corrections from :data:`ACKNOWLEDGED_FILE`).
        current_dir: A directory holding ``jsonschema/`` to check instead of the schemas
            the models generate now.

    Raises:
        ValueError: a snapshot or the acknowledgements file cannot be read.
    """
    current = all_schemas() if current_dir is None else _load_schemas(current_dir)
    found = find_breaking_changes(released_schemas(root), current)
    reasons = acknowledged_changes(root)
    problems = [problem for problem in found if str(problem) not in reasons]
    reported = {str(problem) for problem in found}
    stale = "acknowledged change no longer found, remove it"
    problems += [
        Problem(str(ACKNOWLEDGED_FILE), "", f"{stale}: {line}")
        for line in reasons
        if line not in reported
    ]
    acknowledged = [(p, reasons[str(p)]) for p in found if str(p) in reasons]
    return GateResult(problems, acknowledged)


def release(root: Path) -> list[PurePosixPath]:
    """Record the current schemas as released (after the gate passes).

    Snapshots of versions no longer generated are left alone: removing one is a
    deliberate act (see ``docs/contracts.md``). :data:`ACKNOWLEDGED_FILE` is removed: the
    corrections it acknowledged are part of the new snapshots.

    Returns:
        The snapshot paths written or removed, sorted.
    """
    written = []
    acknowledged = root / ACKNOWLEDGED_FILE
    if acknowledged.is_file():
        acknowledged.unlink()
        written.append(ACKNOWLEDGED_FILE)
    for path, schema in all_schemas().items():
        target = root / RELEASED_DIR / path
        text = render_json(schema)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written.append(RELEASED_DIR / path)
    return sorted(written)


def _load_schemas(directory: Path) -> dict[PurePosixPath, dict[str, Any]]:
    schemas: dict[PurePosixPath, dict[str, Any]] = {}
    for file in sorted((directory / "jsonschema").glob("*/*.json")):
        relative = PurePosixPath(file.relative_to(directory).as_posix())
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON ({exc})") from None
        if not isinstance(document, dict):
            raise ValueError(f"{file}: not a JSON object")
        schemas[relative] = document
    return schemas


def _files_under(root: Path, directory: PurePosixPath) -> list[PurePosixPath]:
    return sorted(
        PurePosixPath(file.relative_to(root).as_posix())
        for file in (root / directory).rglob("*")
        if file.is_file()
    )
