"""JSON Schema (Draft 2020-12) of each event type and version, envelope included.

One document per :class:`~contracts.registry.EventSpec`, written to
``schemas/jsonschema/<type>/<version>.json`` by ``python -m contracts generate``. Schemas
describe what writers send and readers accept in *validation* terms: a field with a
default is optional; the CloudEvents attributes every message must carry are required
(see :data:`contracts.envelope.REQUIRED_ATTRIBUTES`).
"""

import json
from pathlib import PurePosixPath
from typing import Any, Final

from contracts.registry import EventSpec, specs

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_PREFIX: Final = "urn:servicebus-events:jsonschema:"


def schema_id(spec: EventSpec) -> str:
    """The schema's ``$id``: ``urn:servicebus-events:jsonschema:<type>:<version>``.

    A URN, because the project publishes no schema server; usable as ``dataschema``.
    """
    return f"{SCHEMA_ID_PREFIX}{spec.event_type}:{spec.version}"


def schema_path(spec: EventSpec) -> PurePosixPath:
    """Path of the schema below ``schemas/``: ``jsonschema/<type>/<version>.json``."""
    return PurePosixPath("jsonschema", spec.event_type, f"{spec.version}.json")


def envelope_schema(spec: EventSpec) -> dict[str, Any]:
    """The JSON Schema of one event type and version, as a JSON-compatible dict."""
    schema = spec.envelope.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(spec),
        **schema,
        "title": f"{spec.title} (v{spec.version})",
        "x-event-type": spec.event_type,
        "x-schema-version": spec.version,
    }


def all_schemas() -> dict[PurePosixPath, dict[str, Any]]:
    """Every supported event type and version -> its schema, keyed by :func:`schema_path`."""
    return {schema_path(spec): envelope_schema(spec) for spec in specs()}


def render_json(document: object) -> str:
    """The committed text form of a JSON artefact: 2-space indent, UTF-8, final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
