"""The base every contract model shares: frozen, strict when written, tolerant when read.

Writers (the producer's HTTP input, code building events) get ``extra="forbid"``: a
misspelt field is an error, not silently lost. Readers (the consumer, through
:func:`contracts.parsing.parse_envelope`) validate with :data:`READ_CONTEXT`, which makes
every contract model ignore fields it does not know, so a producer that already writes a
newer *compatible* revision of the same schema version (an added optional field) does not
get its messages dead-lettered by an older consumer. See ``docs/contracts.md``,
"Versioning policy".
"""

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationInfo, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_READING_KEY: Final = "contracts.reading"

READ_CONTEXT: Final[Mapping[str, bool]] = MappingProxyType({_READING_KEY: True})
"""Validation context for reading messages: unknown fields are ignored, checks that only
make sense when an event is created (e.g. ``deliver_at`` not in the past) are skipped."""


def is_reading(info: ValidationInfo) -> bool:
    """Whether the current validation runs with :data:`READ_CONTEXT`."""
    context = info.context
    return isinstance(context, Mapping) and bool(context.get(_READING_KEY, False))


_DOCSTRING_SECTION = re.compile(
    r"^(Args|Arguments|Attributes|Examples?|Note|Raises|Returns|Yields):\s*$", re.MULTILINE
)


def summary(docstring: str) -> str:
    """A docstring without its Google-style sections (``Raises:`` ...), for schemas."""
    match = _DOCSTRING_SECTION.search(docstring)
    return (docstring[: match.start()] if match else docstring).strip()


_known_fields: dict[type[BaseModel], frozenset[str]] = {}
"""Field names and aliases of each model, computed on first read (the fields are final
once the class is built)."""


class ContractModel(BaseModel):
    """Frozen model; rejects unknown fields, except when validated with READ_CONTEXT."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _ignore_unknown_fields_when_reading(cls, data: Any, info: ValidationInfo) -> Any:
        if not (isinstance(data, dict) and is_reading(info)):
            return data
        known = _known_fields.get(cls)
        if known is None:
            names = set(cls.model_fields)
            names.update(field.alias for field in cls.model_fields.values() if field.alias)
            known = _known_fields[cls] = frozenset(names)
        if known.issuperset(data):
            return data  # the usual case: nothing to drop, no copy
        return {key: value for key, value in data.items() if key in known}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The model's JSON Schema, described by its docstring's summary only."""
        json_schema = handler.resolve_ref_schema(handler(core_schema))
        description = json_schema.get("description")
        if isinstance(description, str):
            json_schema["description"] = summary(description)
        return json_schema
