"""The same scenarios through a second, independent client: the JavaScript SDK.

``tests/emulator_js/scenarios.mjs`` drives ``@azure/service-bus`` (on the rhea AMQP library)
against an emulator started here, so that the emulator follows the protocol rather than the
habits of the Python SDK. Needs Node.js (skipped, saying so, where it is absent); runs
``npm ci`` in ``tests/emulator_js`` first if ``node_modules`` is missing.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from emulator.testing import combine_configs, queue_config, run_emulator

JS_DIR = Path(__file__).resolve().parents[1] / "emulator_js"
SCENARIOS = [
    "send_receive_complete",
    "abandon_counts_a_delivery",
    "dead_letter_and_dlq",
    "max_delivery_count_dead_letters",
    "schedule_and_cancel",
    "defer_and_receive_deferred",
    "peek_does_not_lock",
    "receive_and_delete",
    "properties_round_trip",
    "sessions",
    "expired_lock_is_lost_and_redelivered",
    "auto_lock_renewal_keeps_the_lock",
    "ttl_expiry_dead_letters",
    "unknown_queue_is_not_found",
]
CONFIG = combine_configs(
    queue_config("js-basic", "js-dlq", "js-schedule", "js-defer", "js-peek", "js-rad", "js-props"),
    queue_config("js-mdc", MaxDeliveryCount=2),
    queue_config("js-sessions", RequiresSession=True),
    queue_config("js-short", LockDuration="PT1S"),
    queue_config("js-ttl", DeadLetteringOnMessageExpiration=True),
)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the JavaScript SDK suite cannot run here")
    return node


def _install_sdk() -> None:
    """``npm ci`` from the committed lock file, once, even with parallel test processes."""
    if (JS_DIR / "node_modules" / "@azure" / "service-bus").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install @azure/service-bus")
    lock_path = Path(tempfile.gettempdir()) / "servicebus-emulator-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (JS_DIR / "node_modules" / "@azure" / "service-bus").is_dir():
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"


def test_javascript_sdk_scenarios() -> None:
    node = _node()
    _install_sdk()
    with run_emulator(CONFIG) as emulator:
        result = subprocess.run(
            [node, "scenarios.mjs", emulator.connection_string],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{result.stderr[-4000:]}"
    outcomes = json.loads(lines[-1])["scenarios"]
    assert sorted(outcomes) == sorted(SCENARIOS)
    failed = {name: outcome["error"] for name, outcome in outcomes.items() if not outcome["ok"]}
    assert failed == {}, "\n".join(f"{name}: {error}" for name, error in failed.items())
