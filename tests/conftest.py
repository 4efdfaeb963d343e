"""Shared fixtures: an emulator per test with the project's two queues; the run's report."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.testing import run_emulator

AUDIT_QUEUE = "audit"
NOTIFICATIONS_QUEUE = "notifications"


def queues_config(**properties: Any) -> dict[str, Any]:
    """Emulator config with the two queues; short locks keep redelivery tests fast."""
    defaults: dict[str, Any] = {
        "LockDuration": "PT2S",
        "MaxDeliveryCount": 3,
        "RequiresDuplicateDetection": True,
        "DuplicateDetectionHistoryTimeWindow": "PT1M",
        "DeadLetteringOnMessageExpiration": True,
    }
    defaults.update(properties)
    return {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "tests",
                    "Queues": [
                        {"Name": name, "Properties": defaults}
                        for name in (AUDIT_QUEUE, NOTIFICATIONS_QUEUE)
                    ],
                }
            ]
        }
    }


@pytest.fixture
def connection_string() -> Iterator[str]:
    """A fresh emulator on an ephemeral port; yields its connection string."""
    with run_emulator(queues_config()) as emulator:
        yield emulator.connection_string


REPORT_FILE = "SERVICEBUS_EVENTS_TEST_REPORT"
"""Environment variable naming the file where tests leave lines for the final summary."""


def pytest_configure(config: pytest.Config) -> None:
    # In the controlling process only: xdist workers inherit the variable when spawned.
    if not hasattr(config, "workerinput") and REPORT_FILE not in os.environ:
        report = Path(tempfile.mkdtemp(prefix="servicebus-events-")) / "report.txt"
        os.environ[REPORT_FILE] = str(report)


def report_line(line: str) -> None:
    """Show ``line`` in the summary at the end of the run (captured output is not shown)."""
    if path := os.environ.get(REPORT_FILE):
        with Path(path).open("a", encoding="utf-8") as report:
            report.write(line + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    path = os.environ.get(REPORT_FILE)
    if path and Path(path).exists():
        terminalreporter.section("fault tests: accepted / published / lost / duplicated")
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            terminalreporter.write_line(line)
