"""The trace view fits the terminal: one line per span, names cut before the bar is."""

import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, set_span_in_context

from tools.processes import ROOT

EVENT_ID = "3f0c1234-5678-90ab-cdef-1234567890ab"


def write_trace(path: Path) -> None:
    """A producer and a consumer span tree in the telemetry file format (one JSON a line)."""
    with path.open("w", encoding="utf-8") as out:
        exporter = ConsoleSpanExporter(
            out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
        providers = {}
        for service in ("producer", "consumer"):
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            providers[service] = provider
        producer = providers["producer"].get_tracer("test")
        consumer = providers["consumer"].get_tracer("test")
        with (
            producer.start_as_current_span("POST /v1/audit-events", kind=SpanKind.SERVER),
            producer.start_as_current_span("create audit", kind=SpanKind.PRODUCER) as create,
        ):
            context = set_span_in_context(create)
        long_name = "INSERT INTO audit_records a very long statement name " * 3
        with (
            consumer.start_as_current_span(
                "process audit",
                context=context,
                kind=SpanKind.CONSUMER,
                attributes={"messaging.message.id": EVENT_ID},
            ),
            consumer.start_as_current_span("audit.append"),
            consumer.start_as_current_span(long_name, kind=SpanKind.CLIENT),
        ):
            pass
        for provider in providers.values():
            provider.shutdown()


def test_trace_view_fits_80_columns(tmp_path: Path) -> None:
    telemetry = tmp_path / "telemetry.jsonl"
    write_trace(telemetry)

    result = subprocess.run(
        [sys.executable, "-m", "tools.traceview", str(telemetry), "--event", EVENT_ID],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "80"},
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    rows = {line.split()[0]: line for line in lines if "█" in line}
    assert set(rows) == {"POST", "create", "process", "audit.append", "INSERT"}
    assert "…" in rows["INSERT"]  # the long name is cut, not wrapped
    assert all(row.rstrip().endswith("█") or "█ " in row for row in rows.values())
