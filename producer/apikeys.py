"""API keys: generated at random, configured as SHA-256 hashes, compared in constant time.

A key is a high-entropy random string (``secrets.token_urlsafe(32)``, 256 bits), so a
plain SHA-256 is enough to make a leaked configuration useless; no password hashing
(salt, work factor) is needed. The configuration names each key so that the caller can
be recorded (``PRODUCER_API_KEYS=billing:9f86d0...,reports:2c26b4...``).
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63}):(?P<digest>[0-9a-fA-F]{64})$")


class ApiKeyHash(BaseModel):
    """One configured key.

    Attributes:
        name: Caller name (letters, digits, ``.``, ``_``, ``-``; at most 64), recorded as
            the event ``source`` ``<source>/clients/<name>``.
        sha256: Lower-case hex SHA-256 of the key's UTF-8 bytes.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def __str__(self) -> str:
        return f"{self.name}:{self.sha256}"


def hash_api_key(key: str) -> str:
    """Lower-case hex SHA-256 of ``key`` (UTF-8)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(name: str) -> tuple[str, ApiKeyHash]:
    """A fresh random key and its configuration entry.

    Returns:
        ``(key, entry)``: give ``key`` to the caller (header ``X-API-Key``) and put
        ``str(entry)`` (``name:sha256hex``) in ``PRODUCER_API_KEYS``.

    Raises:
        pydantic.ValidationError: ``name`` is not a valid key name.
    """
    key = secrets.token_urlsafe(32)
    return key, ApiKeyHash(name=name, sha256=hash_api_key(key))


def parse_api_keys(value: Any) -> Any:
    """Turn ``name:sha256hex`` strings into :class:`ApiKeyHash` (other values pass through).

    Raises:
        ValueError: an entry is not ``name:<64 hex digits>`` or a name repeats.
    """
    if not isinstance(value, list | tuple):
        return value
    parsed: list[Any] = []
    for item in value:
        if isinstance(item, str):
            match = _ENTRY.match(item.strip())
            if match is None:
                raise ValueError(
                    "each API key entry must be 'name:<sha256 hex of the key>' "
                    "(make one with: python -m producer new-api-key NAME)"
                )
            parsed.append(ApiKeyHash(name=match["name"], sha256=match["digest"].lower()))
        else:
            parsed.append(item)
    names = [p.name if isinstance(p, ApiKeyHash) else None for p in parsed]
    duplicates = {n for n in names if n is not None and names.count(n) > 1}
    if duplicates:
        raise ValueError(f"API key names must be unique: {', '.join(sorted(duplicates))}")
    return parsed


def match_api_key(presented: str, keys: Iterable[ApiKeyHash]) -> ApiKeyHash | None:
    """The configured key ``presented`` matches, or ``None``.

    Every entry is compared (``hmac.compare_digest``) so the time taken does not depend on
    which entry, if any, matched.
    """
    digest = hash_api_key(presented).encode()
    found: ApiKeyHash | None = None
    for key in keys:
        if hmac.compare_digest(digest, key.sha256.encode()) and found is None:
            found = key
    return found
