"""One duration type for every component's settings.

pydantic reads a ``timedelta`` from ISO 8601 (``"PT30S"``, ``"P7D"``) or from a number of
seconds, but an environment variable is always a string, and pydantic reads ``"30"`` as
ISO 8601 and refuses it; :data:`Duration` reads such strings as seconds first.
"""

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator


def _numeric_seconds(value: Any) -> Any:
    """``"30"`` / ``"0.5"`` from the environment mean seconds (pydantic wants ISO 8601)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Duration = Annotated[timedelta, BeforeValidator(_numeric_seconds)]
"""A duration: seconds (``30``, ``"0.5"``) or ISO 8601 (``"PT30S"``, ``"P7D"``)."""
