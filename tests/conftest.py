"""Shared fixtures: an emulator per test with the project's two queues."""

from collections.abc import Iterator
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
