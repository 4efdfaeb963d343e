"""Breaking-change gate: fails on breaking schema changes, passes on compatible ones."""

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.artefacts import ACKNOWLEDGED_FILE, RELEASED_DIR, gate, release
from contracts.cli import app
from contracts.compat import compare_schemas, find_breaking_changes
from contracts.registry import specs
from contracts.schema_export import all_schemas, envelope_schema, render_json, schema_path

ROOT = Path(__file__).resolve().parents[2]
AUDIT = specs()[0]
NOTIFICATION = specs()[1]
Mutation = Callable[[dict[str, Any]], None]


def _defs(schema: dict[str, Any], name: str) -> dict[str, Any]:
    definition: dict[str, Any] = schema["$defs"][name]
    return definition


def _add_optional_field(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditEvent")["properties"]["session_id"] = {
        "anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}],
        "default": None,
    }


def _remove_field(schema: dict[str, Any]) -> None:
    del _defs(schema, "Actor")["properties"]["display_name"]


def _require_field(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditEvent")["required"].append("tenant_id")


def _new_required_field(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditEvent")["properties"]["region"] = {"type": "string"}
    _defs(schema, "AuditEvent")["required"].append("region")


def _remove_enum_value(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditOutcome")["enum"].remove("denied")


def _add_enum_value(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditOutcome")["enum"].append("cancelled")


def _change_type(schema: dict[str, Any]) -> None:
    _defs(schema, "Resource")["properties"]["id"] = {"type": "integer"}


def _drop_null(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditEvent")["properties"]["user_agent"] = {"type": "string", "maxLength": 512}


def _narrow_length(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditEvent")["properties"]["action"]["maxLength"] = 50


def _widen_length(schema: dict[str, Any]) -> None:
    _defs(schema, "AuditEvent")["properties"]["action"]["maxLength"] = 200


def _narrow_any_value(schema: dict[str, Any]) -> None:
    schema["$defs"]["JsonValue"] = {"type": "string"}


def _change_constant(schema: dict[str, Any]) -> None:
    schema["properties"]["schemaversion"]["const"] = "2"


def _add_all_of(schema: dict[str, Any]) -> None:
    # A rule between fields (here: a reason whenever access was denied) that the gate
    # cannot weigh, so it must not pass unseen.
    _defs(schema, "AuditEvent")["allOf"] = [
        {"if": {"properties": {"outcome": {"const": "denied"}}}, "then": {"required": ["reason"]}}
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_remove_field, [("data.actor.display_name", "field removed")]),
        (_require_field, [("data.tenant_id", "optional field became required")]),
        (_new_required_field, [("data.region", "new required field")]),
        (_remove_enum_value, [("data.outcome", "enumeration value(s) removed: 'denied'")]),
        (_change_type, [("data.resource.id", "type changed from string to integer")]),
        (_drop_null, [("data.user_agent", "no longer accepts null")]),
        (_narrow_length, [("data.action", "maxLength changed from 100 to 50")]),
        (
            _narrow_any_value,
            [
                ("data.changes[].before", "narrowed from any value to string"),
                ("data.changes[].after", "narrowed from any value to string"),
            ],
        ),
        (_change_constant, [("schemaversion", "constant changed from '1' to '2'")]),
        (_add_all_of, [("data", "allOf added (not analysed: may refuse messages valid before)")]),
        (_add_optional_field, []),
        (_add_enum_value, []),
        (_widen_length, []),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_schema_changes_are_classified(mutate: Mutation, expected: list[tuple[str, str]]) -> None:
    released = envelope_schema(AUDIT)
    current = copy.deepcopy(released)
    mutate(current)
    assert compare_schemas(released, current) == expected


def test_current_schemas_are_compatible_with_the_committed_release() -> None:
    # Compatible, or a finding acknowledged as a correction with its reason.
    assert gate(ROOT).problems == []


def test_dropping_a_released_version_is_breaking() -> None:
    current = {schema_path(AUDIT): envelope_schema(AUDIT)}
    released = {**current, schema_path(NOTIFICATION): envelope_schema(NOTIFICATION)}
    [problem] = find_breaking_changes(released, current)
    assert str(problem).startswith(
        "io.servicebus-events.notification.requested v1: (message): released version is no "
        "longer supported"
    )


def _write_tree(directory: Path, mutate: Mutation | None = None) -> None:
    for path, schema in all_schemas().items():
        if mutate is not None and path == schema_path(AUDIT):
            schema = copy.deepcopy(schema)
            mutate(schema)
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_json(schema), encoding="utf-8")


def _remove_field_and_enum_value(schema: dict[str, Any]) -> None:
    _remove_field(schema)
    _remove_enum_value(schema)


def test_gate_command_fails_with_one_line_per_problem(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    current = tmp_path / "current"
    _write_tree(current, _remove_field_and_enum_value)

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path), "--current", str(current)])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "io.servicebus-events.audit.recorded v1: data.actor.display_name: field removed",
        "io.servicebus-events.audit.recorded v1: data.outcome: enumeration value(s) removed: "
        "'denied'",
        "breaking change: keep the released version and add a new schema version "
        "(docs/contracts.md, Versioning policy)",
    ]


def test_gate_command_passes_a_compatible_addition(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    current = tmp_path / "current"
    _write_tree(current, _add_optional_field)

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path), "--current", str(current)])

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "no breaking changes against schemas/released/\n"


def test_gate_passes_a_new_version_next_to_the_released_one(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    current = tmp_path / "current"
    _write_tree(current)
    v2 = copy.deepcopy(envelope_schema(AUDIT))
    _remove_field(v2)
    _change_constant(v2)
    target = current / schema_path(AUDIT).with_name("2.json")
    target.write_text(render_json(v2), encoding="utf-8")

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path), "--current", str(current)])

    assert result.exit_code == 0, result.stderr


def test_release_writes_snapshots_the_gate_then_uses(tmp_path: Path) -> None:
    written = release(tmp_path)
    assert [str(path) for path in written] == [
        f"schemas/released/{schema_path(spec)}" for spec in specs()
    ]
    assert release(tmp_path) == []
    assert CliRunner().invoke(app, ["gate", "--root", str(tmp_path)]).exit_code == 0


def test_gate_reports_unreadable_snapshots_as_one_line(tmp_path: Path) -> None:
    broken = tmp_path / RELEASED_DIR / schema_path(AUDIT)
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json", encoding="utf-8")

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path)])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "not valid JSON" in result.stderr
    assert result.stderr.count("\n") == 1


def _acknowledge(root: Path, *lines: str) -> None:
    document = {"acknowledged": [{"reason": "states what v1 already enforced", "problems": lines}]}
    (root / ACKNOWLEDGED_FILE).write_text(json.dumps(document), encoding="utf-8")


def test_an_acknowledged_correction_passes_the_gate_and_is_counted(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    current = tmp_path / "current"
    _write_tree(current, _narrow_length)
    _acknowledge(
        tmp_path,
        "io.servicebus-events.audit.recorded v1: data.action: maxLength changed from 100 to 50",
    )

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path), "--current", str(current)])

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1 acknowledged correction(s), see schemas/released/acknowledged.json",
        "no breaking changes against schemas/released/",
    ]


def test_an_acknowledgement_covers_only_its_own_finding(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    current = tmp_path / "current"
    _write_tree(current, _remove_field_and_enum_value)
    _acknowledge(
        tmp_path, "io.servicebus-events.audit.recorded v1: data.actor.display_name: field removed"
    )

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path), "--current", str(current)])

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "io.servicebus-events.audit.recorded v1: data.outcome: enumeration value(s) removed: "
        "'denied'"
    )


def test_a_stale_acknowledgement_fails_the_gate(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    current = tmp_path / "current"
    _write_tree(current)
    stale = "io.servicebus-events.audit.recorded v1: data.action: maxLength changed from 100 to 50"
    _acknowledge(tmp_path, stale)

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path), "--current", str(current)])

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"schemas/released/acknowledged.json: (message): acknowledged change no longer found, "
        f"remove it: {stale}"
    )


@pytest.mark.parametrize(
    "text", ["[]", '{"acknowledged": [{"problems": ["x"]}]}', '{"acknowledged": [{"reason": "r"}]}']
)
def test_a_malformed_acknowledgements_file_is_one_line(tmp_path: Path, text: str) -> None:
    _write_tree(tmp_path / RELEASED_DIR)
    (tmp_path / ACKNOWLEDGED_FILE).write_text(text, encoding="utf-8")

    result = CliRunner().invoke(app, ["gate", "--root", str(tmp_path)])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: schemas/released/acknowledged.json: ")
    assert result.stderr.count("\n") == 1


def test_release_takes_the_acknowledged_corrections_into_the_snapshots(tmp_path: Path) -> None:
    _write_tree(tmp_path / RELEASED_DIR, _widen_length)  # so the current schemas narrow it
    _acknowledge(
        tmp_path,
        "io.servicebus-events.audit.recorded v1: data.action: maxLength changed from 200 to 100",
    )

    result = CliRunner().invoke(app, ["release", "--root", str(tmp_path)])

    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / ACKNOWLEDGED_FILE).exists()
    after = gate(tmp_path)
    assert (after.problems, after.acknowledged) == ([], [])
