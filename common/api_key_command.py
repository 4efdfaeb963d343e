"""The ``new-api-key`` command of the producer and the console, printed the same way.

Each prints a fresh key (for the caller) and the entry to configure for it
(``name:sha256hex`` in ``PRODUCER_API_KEYS``, ``name:sha256hex:role`` in
``CONSOLE_API_KEYS``), or one line and exit code 2 when the name is not a valid key name.
What differs (how the key is made, the labels) is passed in.
"""

import sys
from collections.abc import Callable

from pydantic import ValidationError

__all__ = ["NAME_RULE", "print_new_api_key"]

NAME_RULE = "NAME must be letters, digits, '.', '_' or '-' (at most 64)"
"""Why a key name is refused: the pattern of ``producer.apikeys.ApiKeyHash.name``."""


def print_new_api_key(
    prog: str, make: Callable[[], tuple[str, object]], key_label: str, entry_label: str
) -> int:
    """Make a key and print ``<key_label><key>`` then ``<entry_label><entry>`` on stdout.

    Args:
        prog: The program the error line starts with (``producer``, ``console``).
        make: Makes ``(key, entry)`` for the name given on the command line; raises
            ``pydantic.ValidationError`` when the name is not a valid key name.
        key_label: What precedes the key on its line.
        entry_label: What precedes the entry (its ``str()``) on its line.

    Returns:
        The exit code: 0, or 2 after ``<prog>: NAME must be ...`` on stderr.
    """
    try:
        key, entry = make()
    except ValidationError:
        print(f"{prog}: {NAME_RULE}", file=sys.stderr)
        return 2
    print(f"{key_label}{key}")
    print(f"{entry_label}{entry}")
    return 0
