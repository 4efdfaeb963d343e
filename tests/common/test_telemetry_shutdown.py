"""Telemetry shutdown is bounded: an OTLP collector that accepts connections and never
answers must not keep a process from exiting.

The collector is a real socket server on loopback that accepts every connection and
never sends a byte back.
"""

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from common.telemetry import SHUTDOWN_TIMEOUT, Telemetry, shutdown_step
from tools.processes import ROOT


@pytest.fixture
def silent_collector() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a server that accepts connections, never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_shutdown_abandons_exporters_stuck_on_a_silent_collector(silent_collector: str) -> None:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{silent_collector}/v1/traces"))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{silent_collector}/v1/metrics"),
        export_interval_millis=60_000,
    )
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    with tracer_provider.get_tracer("test").start_as_current_span("work"):
        meter_provider.get_meter("test").create_counter("work.done").add(1)
    budgets: list[float] = []
    telemetry = Telemetry("otlp")
    telemetry.add_shutdown_step("traces", shutdown_step(tracer_provider))
    telemetry.add_shutdown_step("metrics", shutdown_step(meter_provider))
    telemetry.add_shutdown_step("budget", budgets.append)

    report = telemetry.shutdown(0.5)

    assert report.timeout == 0.5
    assert budgets == [0.5], "each step is handed the whole budget (they run at once)"
    assert "traces" in report.abandoned
    assert "budget" in report.finished
    assert telemetry.shutdown().finished == (), "a second call does nothing"


def test_stuck_step_does_not_delay_the_others_and_keeps_the_file_open() -> None:
    release = threading.Event()
    closed: list[str] = []
    telemetry = Telemetry("file")
    telemetry.add_shutdown_step("traces", lambda _: release.wait())
    telemetry.add_shutdown_step("metrics", lambda _: None)
    telemetry._close_after.append(lambda: closed.append("file"))
    try:
        report = telemetry.shutdown(0.2)
    finally:
        release.set()

    assert report.abandoned == ("traces",)
    assert report.finished == ("metrics",)
    assert closed == [], "exporters may still write to the file"


_PROCESS = """
import json
from opentelemetry import metrics, trace
from common.telemetry import TelemetrySettings, configure_telemetry

telemetry = configure_telemetry(
    "shutdown-test", TelemetrySettings(environment="production", telemetry_exporter="otlp")
)
with trace.get_tracer("test").start_as_current_span("work"):
    metrics.get_meter("test").create_counter("work.done").add(1)
report = telemetry.shutdown()
print(json.dumps({"timeout": report.timeout, "abandoned": list(report.abandoned)}))
"""


@pytest.mark.timeout(60)  # the safety net: unbounded, the exporters wait 10 s and more
def test_a_process_exits_with_its_exports_abandoned_after_the_default_budget(
    silent_collector: str,
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROCESS],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "OTEL_EXPORTER_OTLP_ENDPOINT": silent_collector,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
        },
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["timeout"] == SHUTDOWN_TIMEOUT
    assert "traces" in report["abandoned"]
    warnings = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if line.startswith("{") and json.loads(line)["level"] == "WARNING"
    ]
    assert any("abandoned" in w["message"] and "traces" in w["message"] for w in warnings), (
        result.stderr
    )
