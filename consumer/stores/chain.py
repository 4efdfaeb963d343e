"""Hash chain over audit records: canonical JSON + SHA-256.

Each record's ``hash`` is ``sha256(canonical_json(record_without_hash))`` where the record
includes ``prev_hash``, the hash of the record before it (``GENESIS_HASH`` for the first).
Editing, deleting or reordering any stored record therefore changes a hash that the next
record (and the chain head) pins. Canonical JSON: keys sorted, no insignificant
whitespace, UTF-8, times as ISO-8601 UTC with microseconds.
"""

import hashlib
import json
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record."""


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON encoding of ``value`` (sorted keys, compact separators, UTF-8)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def timestamp(value: datetime) -> str:
    """``2026-01-02T03:04:05.000006+00:00`` for an aware UTC datetime."""
    return value.isoformat(timespec="microseconds")


def record_hash(record: dict[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``record`` (which must hold ``prev_hash``)."""
    return hashlib.sha256(canonical_json(record)).hexdigest()
