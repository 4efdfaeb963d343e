"""Lists in environment variables: a JSON list or a comma-separated string."""

import json
from typing import Any


def split_list(value: Any) -> Any:
    """``'["a", "b"]'`` or ``"a, b"`` from the environment as a list; other values as given.

    Use as a ``mode="before"`` field validator (with ``NoDecode`` on the field, so that
    pydantic-settings does not try JSON first).
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value
