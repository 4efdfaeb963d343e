"""docs/azure-from-laptop.md creates the queues and grants the roles the project really uses."""

import json
import re
import shlex
from collections.abc import Callable
from typing import Any

import pytest

from tools.processes import ROOT

GUIDE = ROOT / "docs" / "azure-from-laptop.md"
CONFIG = ROOT / "config" / "servicebus.json"
MAIN_BICEP = ROOT / "infra" / "main.bicep"

FLAGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--lock-duration": ("LockDuration", str),
    "--max-delivery-count": ("MaxDeliveryCount", int),
    "--enable-duplicate-detection": ("RequiresDuplicateDetection", lambda v: v == "true"),
    "--duplicate-detection-history-time-window": ("DuplicateDetectionHistoryTimeWindow", str),
    "--default-message-time-to-live": ("DefaultMessageTimeToLive", str),
    "--enable-dead-lettering-on-message-expiration": (
        "DeadLetteringOnMessageExpiration",
        lambda v: v == "true",
    ),
    "--enable-session": ("RequiresSession", lambda v: v == "true"),
}
"""``az servicebus queue create`` flag -> (``config/servicebus.json`` property, parser)."""


def queue_create_commands() -> dict[str, list[str]]:
    """The guide's ``az servicebus queue create`` commands by ``--name``, as argument lists."""
    text = GUIDE.read_text(encoding="utf-8").replace("\\\n", " ")
    commands = {}
    for line in text.splitlines():
        if line.startswith("az servicebus queue create "):
            argv = shlex.split(line)
            commands[argv[argv.index("--name") + 1]] = argv
    return commands


def configured_queues() -> dict[str, dict[str, Any]]:
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    [namespace] = config["UserConfig"]["Namespaces"]
    return {queue["Name"]: queue["Properties"] for queue in namespace["Queues"]}


def test_the_guide_creates_every_configured_queue() -> None:
    assert sorted(queue_create_commands()) == sorted(configured_queues())


@pytest.mark.parametrize("queue", sorted(configured_queues()))
def test_each_queue_is_created_with_the_configured_settings(queue: str) -> None:
    argv = queue_create_commands()[queue]
    created: dict[str, Any] = {}
    for index, arg in enumerate(argv):
        if arg in FLAGS:
            name, parse = FLAGS[arg]
            created[name] = parse(argv[index + 1])
    expected = configured_queues()[queue]
    unmapped = set(expected) - {name for name, _ in FLAGS.values()}
    assert not unmapped, f"add the az flag for {unmapped} to the guide and to FLAGS"
    assert created == expected


def test_the_guide_names_the_roles_the_deployment_grants() -> None:
    # infra/main.bicep names each built-in role in a comment beside its id.
    granted = set(re.findall(r"// (Azure Service Bus Data \w+)", MAIN_BICEP.read_text("utf-8")))
    guide = GUIDE.read_text(encoding="utf-8")
    named = set(re.findall(r"Azure Service Bus Data \w+", guide))
    assert {"Azure Service Bus Data Sender", "Azure Service Bus Data Receiver"} <= named
    assert named <= granted
