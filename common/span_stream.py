"""Span exporter writing each batch to a text stream in one write.

The SDK's ``ConsoleSpanExporter`` writes span by span; on a line-buffered stream (stderr,
or a file opened with ``buffering=1``) every line became a system call, ~40 per span for
pretty JSON. This one formats the whole batch first, then writes and flushes once, so the
cost per span is the formatting alone and the stream is complete after every export.
"""

from collections.abc import Callable, Sequence
from typing import IO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExportResult


def json_line(span: ReadableSpan) -> str:
    """One span as one line of compact JSON (the ``*_TELEMETRY_FILE`` format)."""
    text: str = span.to_json(indent=None)
    return text + "\n"


def pretty_json(span: ReadableSpan) -> str:
    """One span as indented JSON (the console format), newline-terminated."""
    text: str = span.to_json()
    return text + "\n"


class BatchedStreamSpanExporter(ConsoleSpanExporter):
    """Writes every exported batch to ``out`` with one ``write`` and one ``flush``.

    Args:
        out: Text stream (a file opened for appending, ``sys.stderr``).
        formatter: Span to text, including its trailing newline.
    """

    def __init__(self, out: IO[str], formatter: Callable[[ReadableSpan], str]) -> None:
        super().__init__(out=out, formatter=formatter)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if spans:
            self.out.write("".join(map(self.formatter, spans)))
            self.out.flush()
        return SpanExportResult.SUCCESS
