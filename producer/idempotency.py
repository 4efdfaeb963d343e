"""``Idempotency-Key`` support: a caller's key, scoped to that caller, and a request fingerprint.

Semantics follow the IETF draft "The Idempotency-Key HTTP Header Field"
(https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/): the same key
with the same request returns the original result (the original event ids); the same key
with a different request is a 409 conflict. Keys are kept for ``idempotency_retention``.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotencyKey:
    """A key as used by one caller for one request.

    Attributes:
        principal: The authenticated caller (keys of different callers never collide).
        key: The header value (1-255 visible ASCII characters).
        fingerprint: Hex SHA-256 of the request (see :func:`fingerprint`).
    """

    principal: str
    key: str
    fingerprint: str


def fingerprint(operation: str, payloads: Sequence[BaseModel | dict[str, Any]]) -> str:
    """Hex SHA-256 identifying a request: the operation plus its validated bodies.

    Bodies are compared after validation and normalisation (JSON mode, sorted keys), so
    whitespace or key order in the original JSON does not matter.
    """
    documents = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in payloads]
    canonical = json.dumps(
        {"operation": operation, "bodies": documents},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def valid_key(key: str) -> bool:
    """Whether ``key`` is 1-255 printable ASCII characters (no control characters)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and all(0x20 <= ord(c) < 0x7F for c in key)
