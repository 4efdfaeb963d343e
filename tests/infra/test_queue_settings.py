"""Queue settings in Bicep agree with config/servicebus.json, the single source of truth.

config/servicebus.json has the shape of the official Service Bus emulator's Config.json
(PascalCase properties); infra/main.bicep declares the same queues (ARM's camelCase
properties) and infra/modules/servicebus.bicep maps every field onto the queue resource.
"""

import json
from typing import Any

import pytest

from tests.infra.bicep import Template, body, dig, loop, ref
from tests.infra.tools import REPO_ROOT

pytestmark = pytest.mark.xdist_group("infra")

# Emulator Config.json property -> ARM queue property.
PROPERTY_MAP = {
    "LockDuration": "lockDuration",
    "MaxDeliveryCount": "maxDeliveryCount",
    "DeadLetteringOnMessageExpiration": "deadLetteringOnMessageExpiration",
    "RequiresDuplicateDetection": "requiresDuplicateDetection",
    "DuplicateDetectionHistoryTimeWindow": "duplicateDetectionHistoryTimeWindow",
    "DefaultMessageTimeToLive": "defaultMessageTimeToLive",
    "RequiresSession": "requiresSession",
}


def _config_queues() -> dict[str, dict[str, Any]]:
    config = json.loads((REPO_ROOT / "config" / "servicebus.json").read_text(encoding="utf-8"))
    namespaces = config["UserConfig"]["Namespaces"]
    assert len(namespaces) == 1
    return {queue["Name"]: queue["Properties"] for queue in namespaces[0]["Queues"]}


def _bicep_queues(main: Template) -> dict[str, dict[str, Any]]:
    declared: dict[str, dict[str, Any]] = {}
    for entry in main.variable("queues"):
        settings = dict(entry)
        name = settings.pop("name")
        # Queue names are variables (auditQueueName...) reused by roles and scale rules.
        if name in main.section("variables"):
            name = main.variable(name)
        declared[name] = settings
    return declared


def test_same_queues_in_bicep_and_config(main_template: Template) -> None:
    assert set(_bicep_queues(main_template)) == set(_config_queues())


def test_queue_names_used_for_roles_and_scaling(main_template: Template) -> None:
    names = [
        main_template.variable(ref(item) or "") for item in main_template.variable("queueNames")
    ]
    assert set(names) == set(_config_queues())


def test_every_config_property_is_mapped() -> None:
    for name, properties in _config_queues().items():
        assert set(properties) <= set(PROPERTY_MAP), (
            f"{name}: unmapped {set(properties) - set(PROPERTY_MAP)}"
        )


@pytest.mark.parametrize("queue", sorted(_config_queues()))
def test_queue_settings_match_config(main_template: Template, queue: str) -> None:
    config = _config_queues()[queue]
    bicep = _bicep_queues(main_template)[queue]
    expected = {PROPERTY_MAP[key]: value for key, value in config.items()}
    assert bicep == expected


def test_servicebus_module_applies_every_setting(templates: dict[str, Template]) -> None:
    """Each declared setting reaches the queue resource unchanged (q.<setting>)."""
    module = templates["infra/modules/servicebus.bicep"]
    (declaration,) = module.resources("Microsoft.ServiceBus/namespaces/queues").values()
    item, array = loop(declaration) or ("", "")
    assert array == "queues"
    properties = body(declaration)["properties"]
    assert ref(body(declaration)["name"]) == f"{item}.name"
    for setting in PROPERTY_MAP.values():
        assert ref(dig(properties, setting)) == f"{item}.{setting}", setting


def test_main_passes_the_queue_settings(main_template: Template) -> None:
    (service_bus,) = main_template.modules("modules/servicebus.bicep").values()
    assert ref(body(service_bus)["params"]["queues"]) == "queues"
