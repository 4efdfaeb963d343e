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
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(add_completion=False)
BAR_WIDTH = 48
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
                service=record.get("resource", {}).get("attributes", {}).get("service.name", "?"),
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
        values = (span.attributes.get("messaging.message.id"), span.attributes.get("event.id"))
        return event_id in values

    matching = sorted((s for s in spans if mentions(s)), key=lambda s: s.end)
    if not matching:
        raise typer.BadParameter(f"no span mentions event {event_id!r}")
    trace_id = matching[-1].trace_id
    return [s for s in spans if s.trace_id == trace_id or trace_id in s.links]


def render(spans: list[Span]) -> Table:
    """A waterfall: one row per span, indented by depth, with a bar on a shared time axis."""
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
    table = Table(title=f"trace {spans[0].trace_id}", title_justify="left", expand=False)
    table.add_column("span")
    table.add_column("service")
    table.add_column("duration", justify="right")
    table.add_column(f"0 … {total * 1000:.0f} ms")

    def add(span: Span, depth: int) -> None:
        offset = int((span.start - begin).total_seconds() / total * BAR_WIDTH)
        width = max(1, round(span.seconds / total * BAR_WIDTH))
        bar = Text(" " * offset + "█" * min(width, BAR_WIDTH - offset))
        bar.stylize(KIND_STYLE.get(span.kind, "white"))
        label = Text("  " * depth + span.name)
        if span.status == "ERROR":
            label.stylize("bold red")
        table.add_row(label, span.service, f"{span.seconds * 1000:.1f} ms", bar)
        for child in span.children:
            add(child, depth + 1)

    for root in roots:
        add(root, 0)
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
    console.print(render(spans))
    legend = Text("server ", "cyan") + Text("producer ", "magenta")
    console.print(legend + Text("client ", "yellow") + Text("consumer", "green"))
    if svg is not None:
        console.save_svg(str(svg), title="servicebus-events trace")
    if html is not None:
        console.save_html(str(html))


if __name__ == "__main__":
    app()
