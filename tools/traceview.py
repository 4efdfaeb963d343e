"""Render one event's trace from a telemetry file as a terminal waterfall (or SVG/HTML).

``python -m tools.traceview FILE... [--event EVENT_ID] [--svg out.svg] [--html out.html]``

The files are the JSON-lines output of the ``file`` telemetry exporter (``make run`` writes
one per process). Without ``--event``, the most recent event that reached a handler is
shown.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_MESSAGE_ID,
)
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(add_completion=False)
BAR_WIDTH = 48
"""Widest the time-axis bar gets (characters)."""
BAR_MIN = 16
"""Narrowest it gets; span names are cut first."""
_GAP = 3
"""Characters between two columns (``box.SIMPLE_HEAD``, no edge padding)."""
KIND_STYLE = {
    "SpanKind.SERVER": "cyan",
    "SpanKind.PRODUCER": "magenta",
    "SpanKind.CONSUMER": "green",
    "SpanKind.CLIENT": "yellow",
    "SpanKind.INTERNAL": "white",
}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    start: datetime
    end: datetime
    service: str
    attributes: dict[str, Any]
    status: str
    links: list[str]
    children: list["Span"] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def load_spans(path: Path) -> list[Span]:
    """Spans from a JSON-lines telemetry file (metric lines are skipped).

    Raises:
        typer.BadParameter: the file does not exist.
    """
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist")
    spans = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "context" not in record or "start_time" not in record:
            continue
        spans.append(
            Span(
                name=record["name"],
                trace_id=record["context"]["trace_id"],
                span_id=record["context"]["span_id"],
                parent_id=record.get("parent_id"),
                kind=record.get("kind", ""),
                start=datetime.fromisoformat(record["start_time"].replace("Z", "+00:00")),
                end=datetime.fromisoformat(record["end_time"].replace("Z", "+00:00")),
                service=record.get("resource", {}).get("attributes", {}).get(SERVICE_NAME, "?"),
                attributes=record.get("attributes", {}),
                status=record.get("status", {}).get("status_code", "UNSET"),
                links=[link["context"]["trace_id"] for link in record.get("links", [])],
            )
        )
    return spans


def trace_of(spans: list[Span], event_id: str | None) -> list[Span]:
    """All spans of the trace that processed ``event_id`` (or the latest processed event).

    Raises:
        typer.BadParameter: no span mentions the event.
    """

    served = {s.trace_id for s in spans if s.kind == "SpanKind.SERVER"}

    def mentions(span: Span) -> bool:
        if event_id is None:  # the latest event that came in over HTTP and was processed
            return span.kind == "SpanKind.CONSUMER" and span.trace_id in served
        values = (span.attributes.get(MESSAGING_MESSAGE_ID), span.attributes.get("event.id"))
        return event_id in values

    matching = sorted((s for s in spans if mentions(s)), key=lambda s: s.end)
    if not matching:
        raise typer.BadParameter(f"no span mentions event {event_id!r}")
    trace_id = matching[-1].trace_id
    return [s for s in spans if s.trace_id == trace_id or trace_id in s.links]


def render(spans: list[Span], width: int = 120) -> Table:
    """A waterfall: one row per span, indented by depth, with a bar on a shared time axis.

    The table is at most ``width`` characters wide (the terminal's): the bar gets
    ``BAR_MIN``-``BAR_WIDTH`` characters (after 32 for span names), and span names that do
    not fit end in "…".
    """
    by_id = {s.span_id: s for s in spans}
    roots = []
    for span in sorted(spans, key=lambda s: s.start):
        parent = by_id.get(span.parent_id or "")
        if parent is not None:
            parent.children.append(span)
        else:
            roots.append(span)
    begin = min(s.start for s in spans)
    total = max((max(s.end for s in spans) - begin).total_seconds(), 1e-6)
    rows: list[tuple[Text, str, str, Span]] = []

    def collect(span: Span, depth: int) -> None:
        label = Text("  " * depth + span.name)
        if span.status == "ERROR":
            label.stylize("bold red")
        rows.append((label, span.service, f"{span.seconds * 1000:.1f} ms", span))
        for child in span.children:
            collect(child, depth + 1)

    for root in roots:
        collect(root, 0)
    axis = f"0 … {total * 1000:.0f} ms"
    service_width = max(len("service"), *(len(row[1]) for row in rows))
    duration_width = max(len("duration"), *(len(row[2]) for row in rows))
    label_width = max(len("span"), *(len(row[0]) for row in rows))
    fixed = service_width + duration_width + 3 * _GAP
    bar_width = max(BAR_MIN, len(axis), min(BAR_WIDTH, width - fixed - min(label_width, 32)))
    label_width = max(1, min(label_width, width - fixed - bar_width))
    table = Table(
        title=f"trace {spans[0].trace_id}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("span", width=label_width, no_wrap=True, overflow="ellipsis")
    table.add_column("service", width=service_width, no_wrap=True, overflow="ellipsis")
    table.add_column("duration", width=duration_width, justify="right", no_wrap=True)
    table.add_column(axis, width=bar_width, no_wrap=True)
    for label, service, duration, span in rows:
        offset = min(bar_width - 1, int((span.start - begin).total_seconds() / total * bar_width))
        length = max(1, round(span.seconds / total * bar_width))
        bar = Text(" " * offset + "█" * min(length, bar_width - offset))
        bar.stylize(KIND_STYLE.get(span.kind, "white"))
        table.add_row(label, service, duration, bar)
    return table


@app.command()
def main(
    telemetry_files: Annotated[list[Path], typer.Argument(help="JSON-lines telemetry files.")],
    event_id: Annotated[
        str | None, typer.Option("--event", help="Event id (default: latest processed).")
    ] = None,
    svg: Annotated[Path | None, typer.Option(help="Also save the view as SVG.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also save the view as HTML.")] = None,
) -> None:
    """Show one event's trace: HTTP request, outbox, publish, queue, handler."""
    console = Console(record=svg is not None or html is not None)
    spans = trace_of([s for f in telemetry_files for s in load_spans(f)], event_id)
    console.print(render(spans, console.width))
    legend = Text("server ", "cyan") + Text("producer ", "magenta")
    console.print(legend + Text("client ", "yellow") + Text("consumer", "green"))
    if svg is not None:
        console.save_svg(str(svg), title="servicebus-events trace")
    if html is not None:
        console.save_html(str(html))


if __name__ == "__main__":
    app()
