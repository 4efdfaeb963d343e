"""Console API keys: the producer's format (``name:sha256hex``) plus a role.

Keys are made, hashed and compared exactly as the producer's (:mod:`producer.apikeys`:
256-bit random keys, SHA-256, constant-time comparison); an entry may end in ``:operator``
(replay and purge) or ``:reader`` (the default: look, verify the audit chain).
"""

from collections.abc import Iterable
from typing import Any, Literal, cast

from producer.apikeys import ApiKeyHash, match_api_key, new_api_key, parse_api_keys

Role = Literal["reader", "operator"]
ROLES: tuple[Role, ...] = ("reader", "operator")


class ConsoleApiKey(ApiKeyHash):
    """One configured key and the role it grants.

    Attributes:
        role: ``reader`` or ``operator``.
    """

    role: Role = "reader"

    def __str__(self) -> str:
        return f"{self.name}:{self.sha256}:{self.role}"


def parse_console_api_keys(value: Any) -> Any:
    """Turn ``name:sha256hex[:role]`` strings into :class:`ConsoleApiKey` (other values pass).

    Raises:
        ValueError: an entry is malformed, names an unknown role, or a name repeats.
    """
    if not isinstance(value, list | tuple):
        return value
    roles: list[Role] = []
    entries: list[Any] = []
    for item in value:
        if isinstance(item, str) and item.count(":") == 2:
            entry, _, role = item.strip().rpartition(":")
            if role not in ROLES:
                raise ValueError(
                    f"unknown role {role!r} in an API key entry (use reader or operator)"
                )
            roles.append(role)
            entries.append(entry)
        else:
            roles.append("reader")
            entries.append(item)
    parsed = parse_api_keys(entries)
    return [
        ConsoleApiKey(name=key.name, sha256=key.sha256, role=role)
        if isinstance(key, ApiKeyHash) and not isinstance(key, ConsoleApiKey)
        else key
        for key, role in zip(parsed, roles, strict=True)
    ]


def match_console_key(presented: str, keys: Iterable[ConsoleApiKey]) -> ConsoleApiKey | None:
    """The configured key ``presented`` matches (constant time per entry), or ``None``."""
    found = match_api_key(presented, keys)
    return cast(ConsoleApiKey, found) if found is not None else None


def new_console_key(name: str, role: Role) -> tuple[str, ConsoleApiKey]:
    """A fresh random key and its ``CONSOLE_API_KEYS`` entry.

    Raises:
        pydantic.ValidationError: ``name`` is not a valid key name.
    """
    key, entry = new_api_key(name)
    return key, ConsoleApiKey(name=entry.name, sha256=entry.sha256, role=role)
