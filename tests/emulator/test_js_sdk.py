"""The same scenarios through a second, independent client: the JavaScript SDK.

``tests/emulator_js/scenarios.mjs`` drives ``@azure/service-bus`` (on the rhea AMQP library)
against an emulator started here, so that the emulator follows the protocol rather than the
habits of the Python SDK. ``tests/emulator_js/topics.mjs`` does the same for topics, rules
and ``ServiceBusAdministrationClient`` (HTTPS on the AMQP port, trusting the emulator's
certificate through ``NODE_EXTRA_CA_CERTS``). Needs Node.js (skipped, saying so, where it
is absent); runs ``npm ci`` in ``tests/emulator_js`` first if ``node_modules`` is missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from emulator.testing import (
    combine_configs,
    correlation_rule,
    queue_config,
    run_emulator,
    sql_rule,
    subscription_config,
    topic_config,
)

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
TOPIC_SCENARIOS = [
    "fan_out_to_every_subscription",
    "sql_filter_selects_matching_messages",
    "correlation_filter_selects_matching_messages",
    "administration_client",
]
TOPIC_CONFIG = combine_configs(
    topic_config("js-fanout", "a", "b", "c"),
    topic_config(
        "js-filtered",
        "all",
        subscription_config("high", sql_rule("high", "priority > 5 AND color = 'red'")),
        subscription_config(
            "email",
            correlation_rule("email", Label="notification", Properties={"channel": "email"}),
        ),
    ),
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


def _run_scenarios(script: str, config: dict[str, object], expected: list[str]) -> None:
    """Run ``script`` under Node against an emulator with ``config``; every scenario passes."""
    node = _node()
    _install_sdk()
    with run_emulator(config) as emulator:
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": emulator.ca_file}
        result = subprocess.run(
            [node, script, emulator.connection_string],
            cwd=JS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{result.stderr[-4000:]}"
    outcomes = json.loads(lines[-1])["scenarios"]
    assert sorted(outcomes) == sorted(expected)
    failed = {name: outcome["error"] for name, outcome in outcomes.items() if not outcome["ok"]}
    assert failed == {}, "\n".join(f"{name}: {error}" for name, error in failed.items())


def test_javascript_sdk_scenarios() -> None:
    _run_scenarios("scenarios.mjs", CONFIG, SCENARIOS)


def test_javascript_sdk_topics_rules_and_administration() -> None:
    _run_scenarios("topics.mjs", TOPIC_CONFIG, TOPIC_SCENARIOS)
