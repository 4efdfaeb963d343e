"""Generated artefacts: committed copies are current, and valid against their meta-schemas."""

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012
from typer.testing import CliRunner

from contracts import AuditEvent, new_envelope
from contracts.artefacts import ASYNCAPI_FILE, CONTRACTS_DOC, SCHEMAS_DIR, generate, stale_files
from contracts.asyncapi import message_id
from contracts.catalogue import BEGIN_MARKER, END_MARKER, MissingMarkers, splice
from contracts.cli import app
from contracts.examples import example_envelope, example_json
from contracts.registry import specs
from contracts.schema_export import all_schemas, schema_path

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_META = Path(__file__).parent / "data" / "asyncapi-specs" / "asyncapi-3.0.0.schema.json"
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


def _committed_json(relative: object) -> Any:
    return json.loads((ROOT / str(relative)).read_text(encoding="utf-8"))


def test_committed_artefacts_are_up_to_date() -> None:
    assert stale_files(ROOT) == [], "run: python -m contracts generate"


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / CONTRACTS_DOC, tmp_path / CONTRACTS_DOC)
    return tmp_path


def test_check_reports_each_stale_file_and_generate_repairs_them(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    schema = root / SCHEMAS_DIR / schema_path(specs()[0])
    schema.write_text(schema.read_text().replace('"maxLength": 128', '"maxLength": 64'))
    (root / ASYNCAPI_FILE).unlink()
    leftover = root / SCHEMAS_DIR / "jsonschema" / "com.example.gone" / "1.json"
    leftover.parent.mkdir()
    leftover.write_text("{}")
    doc = root / CONTRACTS_DOC
    doc.write_text(doc.read_text().replace("| `data.actor.id` |", "| `data.actor.ident` |"))

    result = CliRunner().invoke(app, ["check", "--root", str(root)])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "docs/contracts.md: out of date",
        "schemas/asyncapi.json: missing",
        f"schemas/{schema_path(specs()[0])}: out of date",
        "schemas/jsonschema/com.example.gone/1.json: no longer generated",
        "run: python -m contracts generate",
    ]
    assert len(generate(root)) == 4
    assert stale_files(root) == []
    assert CliRunner().invoke(app, ["check", "--root", str(root)]).exit_code == 0


def test_check_without_catalogue_markers_is_one_line_error(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    (root / CONTRACTS_DOC).write_text("# Contracts\n")

    result = CliRunner().invoke(app, ["check", "--root", str(root)])

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: expected one '<!-- BEGIN EVENT CATALOGUE")
    with pytest.raises(MissingMarkers):
        splice(f"{END_MARKER}\n{BEGIN_MARKER}", "x")


@pytest.mark.parametrize("path", sorted(all_schemas()), ids=str)
def test_json_schemas_are_valid_draft_2020_12(path: object) -> None:
    schema = _committed_json(SCHEMAS_DIR / str(path))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("spec", specs(), ids=lambda spec: f"{spec.event_type}-v{spec.version}")
def test_json_schema_accepts_what_the_models_write_and_rejects_the_rest(spec: Any) -> None:
    schema = _committed_json(SCHEMAS_DIR / schema_path(spec))
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)

    for document in (example_json(spec), json.loads(example_envelope(spec).model_dump_json())):
        validator.validate(document)
    broken = example_json(spec)
    del broken["id"]
    broken["data"]["unexpected"] = 1
    messages = sorted(error.message for error in validator.iter_errors(broken))
    assert messages == [
        "'id' is a required property",
        "Additional properties are not allowed ('unexpected' was unexpected)",
    ]


def test_audit_schema_matches_a_fresh_envelope() -> None:
    envelope = new_envelope(
        AuditEvent.model_validate(
            {
                "actor": {"id": "svc"},
                "action": "job.run",
                "resource": {"type": "job", "id": "j-1"},
                "outcome": "success",
                "occurred_at": "2026-01-01T00:00:00Z",
                "source_ip": "192.0.2.1",
            }
        ),
        source="/tests",
    )
    schema = _committed_json(SCHEMAS_DIR / schema_path(specs()[0]))
    jsonschema.Draft202012Validator(schema, format_checker=FORMATS).validate(
        json.loads(envelope.model_dump_json(exclude_none=True))
    )


def _asyncapi_validator() -> jsonschema.Draft7Validator:
    meta = json.loads(ASYNCAPI_META.read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        meta["$id"], Resource.from_contents(meta, default_specification=DRAFT7)
    )
    for uri, definition in meta["definitions"].items():
        registry = registry.with_resource(
            uri, Resource.from_contents(definition, default_specification=DRAFT7)
        )
    return jsonschema.Draft7Validator(meta, registry=registry)


def test_asyncapi_document_is_valid_asyncapi_3_0() -> None:
    document = _committed_json(ASYNCAPI_FILE)
    validator = _asyncapi_validator()

    assert [error.message for error in validator.iter_errors(document)] == []
    assert document["asyncapi"] == "3.0.0"
    assert sorted(document["channels"]) == ["audit", "notifications"]
    broken = {**document, "operations": {"sendAudit": {"action": "publish"}}}
    assert list(validator.iter_errors(broken)), "the meta-schema must catch a 2.x-style action"


def test_asyncapi_examples_match_their_payload_and_header_schemas() -> None:
    document = _committed_json(ASYNCAPI_FILE)
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    for spec in specs():
        for binary in (False, True):
            message = document["components"]["messages"][message_id(spec, binary=binary)]
            assert message["bindings"] == {"amqp1": {}}
            for example in message["examples"]:
                payload_schema = {"$ref": f"urn:asyncapi{message['payload']['$ref']}"}
                jsonschema.Draft202012Validator(payload_schema, registry=registry).validate(
                    example["payload"]
                )
                jsonschema.Draft202012Validator(message["headers"]).validate(
                    example.get("headers", {})
                )


def test_catalogue_lists_every_event_version_and_field() -> None:
    doc = (ROOT / CONTRACTS_DOC).read_text(encoding="utf-8")
    section = doc.split(BEGIN_MARKER)[1].split(END_MARKER)[0]
    for spec in specs():
        assert f"### `{spec.event_type}` v{spec.version}" in section
    assert "| `data.actor.id` | string | yes |" in section
    assert "| `data.deliver_at` | string (date-time) or null | no |" in section
