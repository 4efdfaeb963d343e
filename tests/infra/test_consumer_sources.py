"""The consumer reading a topic subscription instead of a queue, as deployed.

consumerAuditSubscription / consumerNotificationsSubscription (main.bicep) name a
subscription as CONSUMER_*_SUBSCRIPTION takes it. The app then gets that variable instead
of the queue's, its KEDA rule watches the topic and subscription, and the roles move from
the queue to the subscription (and the topic, for replay), never to the namespace. Each
module is expanded with tests/infra/plan.py for given parameters.
"""

import json
from typing import Any

import pytest

from tests.infra.bicep import Template, body, loop, ref
from tests.infra.plan import plan, variable
from tests.infra.tools import INFRA_DIR

pytestmark = pytest.mark.xdist_group("infra")

CONSUMER = "infra/modules/consumer-app.bicep"
SOURCE_ROLES = "infra/modules/servicebus-subscription-source-roles.bicep"
TOPIC_ROLES = "infra/modules/servicebus-topic-roles.bicep"
SIEM = "audit-events/Subscriptions/siem-export"
TOPIC_ID = "namespaces/sb/topics/audit-events"
SUBSCRIPTION_ID = f"{TOPIC_ID}/subscriptions/siem-export"
APP_PARAMS = {
    "serviceBusNamespaceName": "sb",
    "auditQueueName": "audit",
    "notificationsQueueName": "notifications",
    "scalerIdentityId": "id-scaler",
    "messagesPerReplica": 20,
}


def _app(templates: dict[str, Template], **params: Any) -> dict[str, Any]:
    fields = ("properties.template.scale.rules", "properties.template.containers")
    (app,) = plan(templates, CONSUMER, {**APP_PARAMS, **params}, fields)
    return app.properties


def _scaled(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Scale rule name -> the KEDA scaler metadata; every rule uses the scaler identity."""
    rules = app["properties.template.scale.rules"]
    assert {rule["custom"]["identity"] for rule in rules} == {"id-scaler"}
    assert {rule["custom"]["type"] for rule in rules} == {"azure-servicebus"}
    return {rule["name"]: rule["custom"]["metadata"] for rule in rules}


def _sources(app: dict[str, Any]) -> dict[str, str]:
    """The consumer's CONSUMER_*_QUEUE / CONSUMER_*_SUBSCRIPTION variables."""
    (container,) = app["properties.template.containers"]
    names = ("_QUEUE", "_SUBSCRIPTION")
    return {e["name"]: e["value"] for e in container["env"] if e["name"].endswith(names)}


def test_by_default_the_consumer_reads_and_scales_on_both_queues(
    templates: dict[str, Template],
) -> None:
    app = _app(templates)
    assert _sources(app) == {
        "CONSUMER_AUDIT_QUEUE": "audit",
        "CONSUMER_NOTIFICATIONS_QUEUE": "notifications",
    }
    assert _scaled(app) == {
        "servicebus-audit": {"namespace": "sb", "messageCount": "20", "queueName": "audit"},
        "servicebus-notifications": {
            "namespace": "sb",
            "messageCount": "20",
            "queueName": "notifications",
        },
    }


def test_a_subscription_source_is_read_and_scaled_on_by_topic_and_subscription(
    templates: dict[str, Template],
) -> None:
    app = _app(templates, auditSubscription=SIEM)
    # Never both for one source: the consumer refuses a queue and a subscription together.
    assert _sources(app) == {
        "CONSUMER_AUDIT_SUBSCRIPTION": SIEM,
        "CONSUMER_NOTIFICATIONS_QUEUE": "notifications",
    }
    scaled = _scaled(app)
    # KEDA's azure-servicebus scaler: topicName with subscriptionName instead of queueName.
    assert scaled["servicebus-audit"] == {
        "namespace": "sb",
        "messageCount": "20",
        "topicName": "audit-events",
        "subscriptionName": "siem-export",
    }
    assert scaled["servicebus-notifications"]["queueName"] == "notifications"


def _grants(
    templates: dict[str, Template], path: str, params: dict[str, Any]
) -> set[tuple[str, ...]]:
    """(assignment id, scope, principal, role id) of each role assignment ``path`` makes."""
    fields = ("properties.principalId", "properties.roleDefinitionId")
    found: set[tuple[str, ...]] = set()
    for planned in plan(templates, path, params, fields):
        assert planned.type == "Microsoft.Authorization/roleAssignments"
        assert planned.scope is not None
        role = planned.properties["properties.roleDefinitionId"].rsplit("/", 1)[-1]
        found.add((planned.id, planned.scope, planned.properties["properties.principalId"], role))
    return found


def _source_grants(main: Template, templates: dict[str, Template]) -> set[tuple[str, ...]]:
    roles = main.variable("roles")
    params = {
        "namespaceName": "sb",
        "subscriptionPath": SIEM,
        "consumerPrincipalId": "id-consumer",
        "scalerPrincipalId": "id-scaler",
        "dataReceiverRoleId": roles["serviceBusDataReceiver"],
        "dataSenderRoleId": roles["serviceBusDataSender"],
        "dataOwnerRoleId": roles["serviceBusDataOwner"],
    }
    return _grants(templates, SOURCE_ROLES, params)


def test_a_subscription_source_grants_least_privilege_on_its_entities(
    main_template: Template, templates: dict[str, Template]
) -> None:
    names = {guid: name for name, guid in main_template.variable("roles").items()}
    granted = {
        (scope, principal, names[role])
        for _, scope, principal, role in _source_grants(main_template, templates)
    }
    assert granted == {
        (SUBSCRIPTION_ID, "id-consumer", "serviceBusDataReceiver"),  # receive and settle
        (TOPIC_ID, "id-consumer", "serviceBusDataSender"),  # replay goes through the topic
        (SUBSCRIPTION_ID, "id-scaler", "serviceBusDataOwner"),  # KEDA reads the count
    }


def test_a_grant_also_declared_in_the_topics_is_the_same_assignment(
    main_template: Template, templates: dict[str, Template]
) -> None:
    """Listing ``consumer`` as the subscription's receiver or the topic's sender as well
    names the same assignment; a second one for the same grant would be refused by ARM."""
    roles = main_template.variable("roles")
    topic = {
        "name": "audit-events",
        "senders": ["consumer"],
        "subscriptions": [{"name": "siem-export", "receivers": ["consumer"]}],
    }
    params = {
        "namespaceName": "sb",
        "topic": topic,
        "identityPrincipalIds": {"consumer": "id-consumer"},
        "dataSenderRoleId": roles["serviceBusDataSender"],
        "dataReceiverRoleId": roles["serviceBusDataReceiver"],
    }
    declared = _grants(templates, TOPIC_ROLES, params)
    assert len(declared) == 2
    assert declared < _source_grants(main_template, templates)


@pytest.mark.parametrize(
    ("params", "queues", "subscriptions"),
    [
        ({}, ["audit", "notifications"], []),
        ({"consumerAuditSubscription": SIEM}, ["notifications"], [SIEM]),
        (
            {"consumerAuditSubscription": SIEM, "consumerNotificationsSubscription": "n/s/x"},
            [],
            [SIEM, "n/s/x"],
        ),
    ],
)
def test_main_moves_the_consumer_and_scaler_roles_to_what_the_consumer_reads(
    main_template: Template, params: dict[str, str], queues: list[str], subscriptions: list[str]
) -> None:
    assert variable(main_template, "consumerQueueNames", params) == queues
    assert variable(main_template, "consumerSubscriptionPaths", params) == subscriptions


def test_main_wires_subscription_sources_to_the_roles_and_the_app(
    main_template: Template,
) -> None:
    loops = {
        symbol: (loop(declaration) or ("", ""))[1]
        for symbol, declaration in main_template.modules(
            "modules/servicebus-queue-roles.bicep"
        ).items()
    }
    assert loops == {
        "producerQueueRoles": "queueNames",
        "consumerQueueRoles": "consumerQueueNames",
        "scalerQueueRoles": "consumerQueueNames",
        "consoleQueueRoles": "queueNames",
    }
    (roles,) = main_template.modules("modules/servicebus-subscription-source-roles.bicep").values()
    item, array = loop(roles) or ("", "")
    assert array == "consumerSubscriptionPaths"
    params = body(roles)["params"]
    assert params["subscriptionPath"] == item
    assert {name: ref(value) for name, value in params.items() if name != "subscriptionPath"} == {
        "namespaceName": "serviceBus.outputs.name",
        "consumerPrincipalId": "identities.outputs.consumerPrincipalId",
        "scalerPrincipalId": "identities.outputs.scalerPrincipalId",
        "dataReceiverRoleId": "roles.serviceBusDataReceiver",
        "dataSenderRoleId": "roles.serviceBusDataSender",
        "dataOwnerRoleId": "roles.serviceBusDataOwner",
    }
    consumer = body(main_template.modules()["consumer"])
    assert consumer["params"]["auditSubscription"] == "consumerAuditSubscription"
    assert consumer["params"]["notificationsSubscription"] == "consumerNotificationsSubscription"
    assert "consumerSubscriptionRoles" in consumer["dependsOn"]


def test_azd_passes_the_consumer_subscription_settings() -> None:
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text(encoding="utf-8"))
    given = {name: entry["value"] for name, entry in parameters["parameters"].items()}
    assert given["consumerAuditSubscription"] == "${CONSUMER_AUDIT_SUBSCRIPTION}"
    assert given["consumerNotificationsSubscription"] == "${CONSUMER_NOTIFICATIONS_SUBSCRIPTION}"
