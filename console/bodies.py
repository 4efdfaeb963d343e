"""Message bodies shown safely: pretty JSON, plain text, or a hex dump and base64 for bytes
that are not text. Whatever it is, the template prints it as escaped text (Jinja2
autoescape): a body is hostile input."""

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

HEX_DUMP_BYTES = 4096
"""Most bytes shown in a hex dump (the base64 has the whole body)."""


@dataclass(frozen=True)
class Body:
    """A body ready to show.

    Attributes:
        kind: ``json`` (pretty-printed), ``text`` or ``binary``.
        text: The pretty JSON, the text, or a hex dump (offset, hex, ASCII).
        base64: The whole body in base64 (binary only).
        size: Bytes.
    """

    kind: Literal["json", "text", "binary"]
    text: str
    base64: str | None
    size: int


def render_body(body: bytes) -> Body:
    """How to show ``body``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _binary(body)
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    else:
        return Body("json", json.dumps(parsed, indent=2, ensure_ascii=False), None, len(body))
    if all(ch.isprintable() or ch in "\n\r\t" for ch in text):
        return Body("text", text, None, len(body))
    return _binary(body)


def show_value(value: Any) -> str:
    """An application property's value as text (bytes in hex)."""
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _binary(body: bytes) -> Body:
    lines = []
    for offset in range(0, min(len(body), HEX_DUMP_BYTES), 16):
        chunk = body[offset : offset + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {ascii_}")
    if len(body) > HEX_DUMP_BYTES:
        lines.append(f"... {len(body) - HEX_DUMP_BYTES} more byte(s): see base64")
    return Body("binary", "\n".join(lines), base64.b64encode(body).decode(), len(body))
