"""Topics, subscriptions and rules declared in parameters, and their entity-scoped roles.

The example in infra/examples/servicebus-topics.json (also shown in docs/deploy.md) is
checked against the modules' user-defined types, then expanded with tests/infra/plan.py
into the resources and role assignments ARM would create.
"""

import json
import re
from typing import Any

import pytest

from tests.infra.bicep import Template, body, decorator, loop, ref
from tests.infra.plan import Planned, plan
from tests.infra.tools import INFRA_DIR

pytestmark = pytest.mark.xdist_group("infra")

MAIN = "infra/main.bicep"
SERVICE_BUS = "infra/modules/servicebus.bicep"
TOPIC = "infra/modules/servicebus-topic.bicep"
SUBSCRIPTION = "infra/modules/servicebus-subscription.bicep"
RULE = "infra/modules/servicebus-rule.bicep"
TOPIC_ROLES = "infra/modules/servicebus-topic-roles.bicep"
SUBSCRIPTION_ROLES = "infra/modules/servicebus-subscription-roles.bicep"
EXAMPLE = INFRA_DIR / "examples" / "servicebus-topics.json"

TYPED_PARAMS = {TOPIC: ("topic", "topicType"), SUBSCRIPTION: ("subscription", "subscriptionType")}
TYPED_PARAMS[RULE] = ("rule", "ruleType")
# Array fields whose items a nested module receives, so whose item type is that module's.
ITEM_TYPES = {("topicType", "subscriptions"): SUBSCRIPTION, ("subscriptionType", "rules"): RULE}
SCALARS = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}
SENDER_ROLE = "serviceBusDataSender"
RECEIVER_ROLE = "serviceBusDataReceiver"
NAMESPACE = "namespaces/sb"
TOPIC_ID = f"{NAMESPACE}/topics/audit-events"


def _example() -> list[dict[str, Any]]:
    topics: list[dict[str, Any]] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return topics


def _required(template: Template, type_name: str) -> set[str]:
    """Fields of a type declared without ``?`` (pycep drops the marker; the text keeps it)."""
    block = re.search(rf"^type {type_name} = \{{\n(.*?)^\}}", template.text, re.M | re.S)
    assert block, f"{template.path}: no type {type_name}"
    return set(re.findall(r"^  (\w+): [\w]+$", block.group(1), re.M))


def _check(templates: dict[str, Template], path: str, type_name: str, value: Any, at: str) -> None:
    """Assert ``value`` conforms to the user-defined type ``type_name`` declared in ``path``."""
    template = templates[path]
    declared = template.tree["types"][type_name]["value"]
    _check_shape(templates, path, type_name, declared, value, at)
    missing = _required(template, type_name) - set(value)
    assert not missing, f"{at}: missing {missing}"


def _check_shape(
    templates: dict[str, Template], path: str, owner: str, declared: Any, value: Any, at: str
) -> None:
    if isinstance(declared, dict):
        assert isinstance(value, dict), at
        assert set(value) <= set(declared), f"{at}: unknown {set(value) - set(declared)}"
        for key, field_type in declared.items():
            if key not in value:
                continue
            if (owner, key) in ITEM_TYPES:
                item_path = ITEM_TYPES[(owner, key)]
                item_type = TYPED_PARAMS[item_path][1]
                for index, item in enumerate(value[key]):
                    _check(templates, item_path, item_type, item, f"{at}.{key}[{index}]")
            else:
                _check_shape(templates, path, owner, field_type, value[key], f"{at}.{key}")
    elif declared in SCALARS:
        assert isinstance(value, SCALARS[declared]), f"{at}: expected {declared}"
    else:
        _check(templates, path, declared, value, at)


# --- types ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [TOPIC, SUBSCRIPTION, RULE])
def test_items_are_typed_and_every_type_and_param_is_described(
    templates: dict[str, Template], path: str
) -> None:
    template = templates[path]
    param, type_name = TYPED_PARAMS[path]
    assert template.param(param)["type"] == type_name
    for name, declaration in template.tree["types"].items():
        assert decorator(declaration, "description"), f"{path}: type {name}"
    for name, declaration in template.section("parameters").items():
        assert decorator(declaration, "description"), f"{path}: param {name}"


def test_item_types_follow_the_module_chain(templates: dict[str, Template]) -> None:
    """Each array field in ITEM_TYPES is looped into the module whose typed param gets it."""
    for (owner, field), target in ITEM_TYPES.items():
        source = TOPIC if owner == "topicType" else SUBSCRIPTION
        (declaration,) = templates[source].modules(target.removeprefix("infra/modules/")).values()
        item, _ = loop(declaration) or ("", "")
        param = TYPED_PARAMS[target][0]
        assert body(declaration)["params"][param] == item
        assert field in templates[source].tree["types"][owner]["value"]


def _parameter_file_topics() -> list[Any]:
    """serviceBusTopics as listed in infra/main.parameters.json (azd), if it lists some."""
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text(encoding="utf-8"))
    value = parameters["parameters"].get("serviceBusTopics", {}).get("value")
    return value if isinstance(value, list) else []


def test_example_and_azd_topics_match_the_types(templates: dict[str, Template]) -> None:
    for index, topic in enumerate(_example() + _parameter_file_topics()):
        _check(templates, TOPIC, "topicType", topic, f"topics[{index}]")
        for sub in topic.get("subscriptions", []):
            for rule in sub.get("rules", []):
                assert ("sqlFilter" in rule) != ("correlationFilter" in rule), rule["name"]


def test_docs_show_the_example() -> None:
    docs = (INFRA_DIR.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(\[.*?\])\n```", docs, re.S)
    assert block, "docs/deploy.md has no topics example"
    assert json.loads(block.group(1)) == _example()


# --- entities -----------------------------------------------------------------------------


def _entities(templates: dict[str, Template], topics: list[Any]) -> list[Planned]:
    params = {"name": "sb", "queues": [], "topics": topics}
    return [p for p in plan(templates, SERVICE_BUS, params) if "/topics" in p.id]


def test_default_deploys_no_topic(templates: dict[str, Template], main_template: Template) -> None:
    assert main_template.param("serviceBusTopics")["default"] == []
    assert templates[SERVICE_BUS].param("topics")["default"] == []
    assert _entities(templates, []) == []


def test_declared_topic_yields_topic_subscriptions_and_rules(
    templates: dict[str, Template],
) -> None:
    ids = sorted(p.id.removeprefix(TOPIC_ID) for p in _entities(templates, _example()))
    assert ids == [
        "",
        "/subscriptions/analytics",
        "/subscriptions/analytics/rules/$Default",  # replaced by a false filter
        "/subscriptions/analytics/rules/recorded",
        "/subscriptions/archive",  # no rules: Azure's $Default (1=1) stays
        "/subscriptions/siem-export",
        "/subscriptions/siem-export/rules/$Default",
        "/subscriptions/siem-export/rules/security-events",
    ]


def test_rules_carry_their_filter_and_action(templates: dict[str, Template]) -> None:
    fields = ("properties.sqlFilter", "properties.correlationFilter", "properties.action")
    params = {"namespaceName": "sb", "topic": _example()[0]}
    planned = {
        p.id.rsplit("/", 1)[-1]: p.properties for p in plan(templates, TOPIC, params, fields)
    }
    siem, analytics = _example()[0]["subscriptions"][:2]
    assert planned["security-events"] == {
        "properties.sqlFilter": siem["rules"][0]["sqlFilter"],
        "properties.correlationFilter": None,
        "properties.action": siem["rules"][0]["action"],
    }
    assert (
        planned["recorded"]["properties.correlationFilter"]
        == (analytics["rules"][0]["correlationFilter"])
    )
    # filterType follows the filter given (pycep mangles this ternary, so check the text).
    assert "filterType: rule.?correlationFilter == null ? 'SqlFilter' : 'CorrelationFilter'" in (
        templates[RULE].text
    )


def test_a_declared_default_rule_is_kept(templates: dict[str, Template]) -> None:
    rule = {"name": "$Default", "sqlFilter": {"sqlExpression": "severity = 'high'"}}
    subscription = {"name": "s", "rules": [rule]}
    params = {"namespaceName": "sb", "topicName": "t", "subscription": subscription}
    fields = ("properties.sqlFilter",)
    rules = [p for p in plan(templates, SUBSCRIPTION, params, fields) if "/rules/" in p.id]
    assert [(p.id, p.properties) for p in rules] == [
        (
            f"{NAMESPACE}/topics/t/subscriptions/s/rules/$Default",
            {"properties.sqlFilter": rule["sqlFilter"]},
        )
    ]


def test_topics_follow_the_queues_one_at_a_time(templates: dict[str, Template]) -> None:
    """forwardTo targets (queues, earlier topics) exist before a subscription names them."""
    (declaration,) = templates[SERVICE_BUS].modules("servicebus-topic.bicep").values()
    assert decorator(declaration, "batchSize") == 1
    assert body(declaration)["dependsOn"] == ["queue"]


# --- roles ----------------------------------------------------------------------------------


def _assignments(
    main: Template, templates: dict[str, Template], topic: Any
) -> set[tuple[str, ...]]:
    """(scope, principal, role name) of each assignment for ``topic``."""
    roles = main.variable("roles")
    params = {
        "namespaceName": "sb",
        "topic": topic,
        "identityPrincipalIds": {"producer": "id-producer", "consumer": "id-consumer"},
        "dataSenderRoleId": roles[SENDER_ROLE],
        "dataReceiverRoleId": roles[RECEIVER_ROLE],
    }
    fields = ("properties.principalId", "properties.roleDefinitionId")
    by_id = {guid: name for name, guid in roles.items()}
    found: set[tuple[str, ...]] = set()
    for planned in plan(templates, TOPIC_ROLES, params, fields):
        assert planned.type == "Microsoft.Authorization/roleAssignments"
        assert planned.scope is not None
        role = planned.properties["properties.roleDefinitionId"].rsplit("/", 1)[-1]
        principal = planned.properties["properties.principalId"]
        found.add((planned.scope.removeprefix(TOPIC_ID), principal, by_id[role]))
    return found


def test_declared_topic_yields_entity_scoped_least_privilege_roles(
    main_template: Template, templates: dict[str, Template]
) -> None:
    assert _assignments(main_template, templates, _example()[0]) == {
        ("", "id-producer", SENDER_ROLE),
        ("/subscriptions/siem-export", "id-consumer", RECEIVER_ROLE),
        ("/subscriptions/analytics", "id-consumer", RECEIVER_ROLE),
        ("/subscriptions/archive", "id-consumer", RECEIVER_ROLE),
    }


def test_other_principals_are_granted_by_object_id(
    main_template: Template, templates: dict[str, Template]
) -> None:
    siem = "00000000-0000-0000-0000-0000000000aa"
    topic = {"name": "audit-events", "subscriptions": [{"name": "siem", "receivers": [siem]}]}
    assert _assignments(main_template, templates, topic) == {
        ("/subscriptions/siem", siem, RECEIVER_ROLE)
    }


def test_main_wires_topics_to_the_entities_and_the_roles(main_template: Template) -> None:
    (service_bus,) = main_template.modules("modules/servicebus.bicep").values()
    assert body(service_bus)["params"]["topics"] == "serviceBusTopics"
    (declaration,) = main_template.modules("modules/servicebus-topic-roles.bicep").values()
    item, array = loop(declaration) or ("", "")
    assert array == "serviceBusTopics"
    params = body(declaration)["params"]
    assert params["topic"] == item
    assert ref(params["namespaceName"]) == "serviceBus.outputs.name"
    assert ref(params["dataSenderRoleId"]) == f"roles.{SENDER_ROLE}"
    assert ref(params["dataReceiverRoleId"]) == f"roles.{RECEIVER_ROLE}"
    identities = main_template.variable(params["identityPrincipalIds"])
    assert {key: ref(value) for key, value in identities.items()} == {
        "producer": "identities.outputs.producerPrincipalId",
        "consumer": "identities.outputs.consumerPrincipalId",
    }
    for app in ("producer", "consumer"):
        assert "topicRoles" in body(main_template.modules()[app])["dependsOn"], app
