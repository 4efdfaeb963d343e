"""Security properties of the Bicep templates, asserted on pycep's parse of each file."""

import re
from typing import Any

import pytest

from tests.infra.bicep import Template, body, condition, decorator, dig, function_name, loop, ref

pytestmark = pytest.mark.xdist_group("infra")

MAIN = "infra/main.bicep"
SERVICE_BUS = "infra/modules/servicebus.bicep"
QUEUE_ROLES = "infra/modules/servicebus-queue-roles.bicep"
REGISTRY = "infra/modules/registry.bicep"
PRODUCER = "infra/modules/producer-app.bicep"
CONSUMER = "infra/modules/consumer-app.bicep"
CONSOLE = "infra/modules/console-app.bicep"
APPS = (PRODUCER, CONSUMER, CONSOLE)
ENVIRONMENT = "infra/modules/container-apps-environment.bicep"
MONITORING = "infra/modules/monitoring.bicep"
POSTGRES = "infra/modules/postgres.bicep"

# Built-in role definition ids (identical in every tenant), by role name.
SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"  # Azure Service Bus Data Sender
RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"  # Azure Service Bus Data Receiver
OWNER = "090c5cfd-751d-490a-894a-3ce6f1109419"  # Azure Service Bus Data Owner
BUILT_IN_ROLES = {
    "serviceBusDataSender": (SENDER, "Azure Service Bus Data Sender"),
    "serviceBusDataReceiver": (RECEIVER, "Azure Service Bus Data Receiver"),
    "serviceBusDataOwner": (OWNER, "Azure Service Bus Data Owner"),
    "acrPull": ("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull"),
    "acrPush": ("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush"),
}

# Resource types whose only available API versions are previews.
PREVIEW_ONLY_TYPES = {"microsoft.insights/diagnosticsettings"}


def _code_without_comments(text: str) -> str:
    """Bicep source with // and /* */ comments removed (string literals kept)."""
    out: list[str] = []
    i = 0
    in_string = False
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif char == "'":
                in_string = False
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end == -1 else end + 2
            continue
        else:
            if char == "'":
                in_string = True
            out.append(char)
        i += 1
    return "".join(out)


def _walk(value: Any) -> list[Any]:
    """Every node of a pycep tree."""
    nodes = [value]
    if isinstance(value, dict):
        for child in value.values():
            nodes.extend(_walk(child))
    elif isinstance(value, list):
        for child in value:
            nodes.extend(_walk(child))
    return nodes


def _only(template: Template, resource_type: str) -> dict[str, Any]:
    declarations = list(template.resources(resource_type).values())
    assert len(declarations) == 1, f"{template.path}: expected one {resource_type}"
    return body(declarations[0])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    """Container env as name -> value/secretRef (env is concat(baseEnv, databaseEnv))."""
    return {item["name"]: item.get("value", item.get("secretRef")) for item in container["env"]}


def _container_env(template: Template) -> dict[str, Any]:
    """Every variable the app may get: both branches of ``cond ? [...] : [...]`` count."""
    env_expr = dig(_only(template, "Microsoft.App/containerApps"), "properties", "template")
    (container,) = env_expr["containers"]
    assert function_name(container["env"]) == "concat"
    merged: dict[str, Any] = {}
    for argument in container["env"]["function"]["parameters"].values():
        name = ref(argument)
        assert name is not None
        value = template.variable(name)
        if dig(value, "operator", "type") == "conditional":  # empty(x) ? [] : [...]
            operands = dig(value, "operator", "operands")
            value = [*operands["true_value"], *operands["false_value"]]
        merged.update(_env({"env": value}))
    return merged


# --- no keys anywhere ---------------------------------------------------------------


def test_no_list_functions_or_sas_rules(templates: dict[str, Template]) -> None:
    """No listKeys()/list*() (they return secrets) and no SAS authorization rules."""
    for path, template in templates.items():
        code = _code_without_comments(template.text)
        assert not re.search(r"\blist[A-Z]\w*\s*\(", code), f"{path} calls a list*() function"
        functions = {function_name(node) for node in _walk(template.tree)}
        assert not {f for f in functions if f and f.lower().startswith("list")}, path
        for declaration in template.resources().values():
            assert "authorizationrules" not in declaration["type"].lower(), path
        assert "SharedAccessKey" not in code, path


def test_service_bus_rejects_sas_and_old_tls(templates: dict[str, Template]) -> None:
    namespace = _only(templates[SERVICE_BUS], "Microsoft.ServiceBus/namespaces")
    assert namespace["properties"]["disableLocalAuth"] is True
    assert namespace["properties"]["minimumTlsVersion"] == "1.2"


def test_service_bus_is_standard_unless_premium_is_asked_for(
    templates: dict[str, Template], main_template: Template
) -> None:
    for template, name in ((main_template, "serviceBusSku"), (templates[SERVICE_BUS], "sku")):
        declaration = template.param(name)
        assert declaration["default"] == "Standard"
        assert sorted(decorator(declaration, "allowed")) == ["Premium", "Standard"]
    namespace = _only(templates[SERVICE_BUS], "Microsoft.ServiceBus/namespaces")
    choice = dig(namespace, "sku", "operator")
    assert choice["type"] == "conditional"
    operands = choice["operands"]
    assert operands["condition"] == "isPremium"
    assert operands["true_value"]["name"] == "Premium"
    assert operands["true_value"]["capacity"] == "premiumMessagingUnits"
    assert operands["false_value"]["name"] == "Standard"


def test_no_other_service_bus_auth_in_app_settings(templates: dict[str, Template]) -> None:
    # Besides telemetry, only the console holds secrets: its session key and, optionally,
    # its Entra client secret (Container Apps authentication reads that one).
    extra_secrets = {
        PRODUCER: set(),
        CONSUMER: set(),
        CONSOLE: {"console-session-secret", "microsoft-provider-authentication-secret"},
    }
    for path, prefix in ((PRODUCER, "PRODUCER_"), (CONSUMER, "CONSUMER_"), (CONSOLE, "CONSOLE_")):
        env = _container_env(templates[path])
        assert not [name for name in env if "CONNECTION_STRING" in name and "SERVICEBUS" in name]
        assert env[f"{prefix}SERVICEBUS_FULLY_QUALIFIED_NAMESPACE"] == (
            "serviceBusFullyQualifiedNamespace"
        )
        assert env["AZURE_CLIENT_ID"] == "identityClientId"
        assert env[f"{prefix}AUDIT_QUEUE"] == "auditQueueName"
        assert env[f"{prefix}NOTIFICATIONS_QUEUE"] == "notificationsQueueName"
        assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "appinsights-connection-string"
        assert _secret_names(templates[path]) == {
            "appinsights-connection-string",
            *extra_secrets[path],
        }, path


def _secret_names(template: Template) -> set[str]:
    """Names of the app's secrets (a literal list, or concat() of list variables)."""
    secrets = _only(template, "Microsoft.App/containerApps")["properties"]["configuration"][
        "secrets"
    ]
    if isinstance(secrets, list):
        return {s["name"] for s in secrets}
    assert function_name(secrets) == "concat"
    names: set[str] = set()
    for argument in secrets["function"]["parameters"].values():
        value = template.variable(ref(argument) or "")
        if isinstance(dig(value, "operator", "type"), str):  # empty(x) ? [] : [...]
            value = dig(value, "operator", "operands", "false_value")
        for secret in value:  # a name may be a variable (the platform's fixed name)
            name = secret["name"]
            names.add(template.variable(name) if name in template.section("variables") else name)
    return names


# --- roles ------------------------------------------------------------------------------


def test_role_ids_are_the_named_built_in_roles(main_template: Template) -> None:
    roles = main_template.variable("roles")
    assert roles == {key: guid for key, (guid, _) in BUILT_IN_ROLES.items()}
    for guid, role_name in BUILT_IN_ROLES.values():
        (line,) = [line for line in main_template.text.splitlines() if guid in line]
        assert line.rstrip().endswith(f"// {role_name}"), line


def test_every_role_assignment_is_scoped_to_an_entity_or_the_registry(
    templates: dict[str, Template],
) -> None:
    """Service Bus roles land on one queue, topic or subscription, never the namespace."""
    allowed_scopes = {
        "microsoft.servicebus/namespaces/queues",
        "microsoft.servicebus/namespaces/topics",
        "microsoft.servicebus/namespaces/topics/subscriptions",
        "microsoft.containerregistry/registries",
    }
    found = 0
    for path, template in templates.items():
        for symbol, declaration in template.resources(
            "Microsoft.Authorization/roleAssignments"
        ).items():
            found += 1
            scope = body(declaration).get("scope")
            assert isinstance(scope, str), f"{path}:{symbol} has no resource scope"
            scope_type = template.resource(scope)["type"].lower()
            assert scope_type in allowed_scopes, f"{path}:{symbol} scoped to {scope_type}"
            role_id = dig(body(declaration), "properties", "roleDefinitionId")
            assert function_name(role_id) == "subscription_resource_id", f"{path}:{symbol}"
            assert body(declaration)["properties"]["principalType"] == "ServicePrincipal"
    assert found >= 5


def test_queue_role_module_assigns_on_the_queue(templates: dict[str, Template]) -> None:
    template = templates[QUEUE_ROLES]
    queue = template.resource("queue")
    assert queue["type"] == "Microsoft.ServiceBus/namespaces/queues"
    assert body(queue)["name"] == "queueName"
    (assignment,) = template.resources("Microsoft.Authorization/roleAssignments").values()
    item, array = loop(assignment) or ("", "")
    assert array == "roleDefinitionIds"
    properties = body(assignment)["properties"]
    assert properties["roleDefinitionId"]["function"]["parameters"]["resource_name_1"] == item
    assert properties["principalId"] == "principalId"
    assert body(assignment)["scope"] == "queue"


def _queue_grants(main: Template) -> dict[str, set[str]]:
    """principal output (identities.outputs.X) -> role GUIDs granted on every queue."""
    roles = main.variable("roles")
    grants: dict[str, set[str]] = {}
    for symbol, declaration in main.modules("modules/servicebus-queue-roles.bicep").items():
        item, array = loop(declaration) or ("", "")
        # consumerQueueNames: the queues the consumer reads (test_consumer_sources).
        assert array in ("queueNames", "consumerQueueNames"), f"{symbol} must loop over queues"
        params = body(declaration)["params"]
        assert params["queueName"] == item, symbol
        assert ref(params["namespaceName"]) == "serviceBus.outputs.name", symbol
        principal = ref(params["principalId"]) or ""
        granted = {
            roles[(ref(r) or "").removeprefix("roles.")] for r in params["roleDefinitionIds"]
        }
        grants.setdefault(principal, set()).update(granted)
    return grants


def test_least_privilege_queue_roles(main_template: Template) -> None:
    assert _queue_grants(main_template) == {
        "identities.outputs.producerPrincipalId": {SENDER},
        # Receives and settles; the retry ladder re-sends scheduled copies to the queue.
        "identities.outputs.consumerPrincipalId": {RECEIVER, SENDER},
        # KEDA azure-servicebus scaler: reading the message count needs Manage.
        "identities.outputs.scalerPrincipalId": {OWNER},
        # Peeks and receives dead letters (Receiver); replay re-sends them (Sender).
        "identities.outputs.consolePrincipalId": {RECEIVER, SENDER},
    }


def test_data_owner_only_for_the_keda_scaler_with_the_reason(
    templates: dict[str, Template], main_template: Template
) -> None:
    for path, template in templates.items():
        assert OWNER not in _code_without_comments(template.text) or path == MAIN, path
    code = _code_without_comments(main_template.text)
    # On the queues the consumer reads, and on the subscriptions it reads (where the role
    # module grants it to the scaler only: test_consumer_sources).
    assert code.count("roles.serviceBusDataOwner") == 2
    # The comment right above the scaler's assignments explains why Data Owner is needed.
    lines = main_template.text.splitlines()
    reasons = {
        "scalerQueueRoles": ("GetQueueRuntimeProperties", "lifecycle 'None'"),
        "consumerSubscriptionRoles": (),
    }
    for symbol, specific in reasons.items():
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"module {symbol} ")]
        start = max(0, index - 12)
        comment = " ".join(line for line in lines[start:index] if line.startswith("//"))
        for words in ("KEDA", "Manage", "Data Owner", *specific):
            assert words in comment, f"missing from the Data Owner justification: {words}"


def test_scaler_and_pull_identities_are_hidden_from_app_code(
    templates: dict[str, Template],
) -> None:
    expected = {
        PRODUCER: {"identityId": "Main", "acrPullIdentityId": "None"},
        CONSUMER: {"identityId": "Main", "scalerIdentityId": "None", "acrPullIdentityId": "None"},
        CONSOLE: {"identityId": "Main", "acrPullIdentityId": "None"},
    }
    for path, lifecycles in expected.items():
        app = _only(templates[path], "Microsoft.App/containerApps")
        settings = app["properties"]["configuration"]["identitySettings"]
        assert {s["identity"]: s["lifecycle"] for s in settings} == lifecycles, path
        assigned = set(app["identity"]["userAssignedIdentities"])
        assert assigned == {f"'${{{name}}}'" for name in lifecycles}, path
        assert app["identity"]["type"] == "UserAssigned"


def test_main_wires_each_identity_to_its_app(main_template: Template) -> None:
    producer = body(main_template.modules()["producer"])["params"]
    consumer = body(main_template.modules()["consumer"])["params"]
    console = body(main_template.modules()["console"])["params"]
    assert ref(console["identityId"]) == "identities.outputs.consoleId"
    assert ref(console["identityClientId"]) == "identities.outputs.consoleClientId"
    assert "scalerIdentityId" not in console
    assert ref(producer["identityId"]) == "identities.outputs.producerId"
    assert ref(producer["identityClientId"]) == "identities.outputs.producerClientId"
    assert "scalerIdentityId" not in producer
    assert ref(consumer["identityId"]) == "identities.outputs.consumerId"
    assert ref(consumer["identityClientId"]) == "identities.outputs.consumerClientId"
    assert ref(consumer["scalerIdentityId"]) == "identities.outputs.scalerId"
    for params in (producer, consumer, console):
        assert ref(params["acrPullIdentityId"]) == "identities.outputs.acrPullId"


# --- container apps -------------------------------------------------------------------


def _probes(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = app["properties"]["template"]["containers"]
    return {probe["type"]: probe["httpGet"] for probe in container["probes"]}


def test_producer_has_https_ingress_probes_and_a_warm_replica(
    templates: dict[str, Template], main_template: Template
) -> None:
    template = templates[PRODUCER]
    app = _only(template, "Microsoft.App/containerApps")
    ingress = app["properties"]["configuration"]["ingress"]
    assert ingress["external"] is True
    assert ingress["allowInsecure"] is False
    assert ingress["targetPort"] == "port"
    assert template.param("port")["default"] == 8000
    probes = _probes(app)
    assert probes["Liveness"] == {"path": "/healthz", "port": "port"}
    assert probes["Readiness"] == {"path": "/readyz", "port": "port"}
    scale = app["properties"]["template"]["scale"]
    assert scale["minReplicas"] == "minReplicas"
    for declaration in (template.param("minReplicas"), main_template.param("producerMinReplicas")):
        assert decorator(declaration, "min_value") >= 1
        assert declaration["default"] >= 1
    params = body(main_template.modules()["producer"])["params"]
    assert params["minReplicas"] == "producerMinReplicas"


def test_consumer_has_no_ingress_and_probes_its_health_port(
    templates: dict[str, Template], main_template: Template
) -> None:
    template = templates[CONSUMER]
    app = _only(template, "Microsoft.App/containerApps")
    assert "ingress" not in app["properties"]["configuration"]
    assert template.param("healthPort")["default"] == 8081
    probes = _probes(app)
    assert probes["Liveness"] == {"path": "/healthz", "port": "healthPort"}
    assert probes["Readiness"] == {"path": "/readyz", "port": "healthPort"}
    assert _container_env(template)["CONSUMER_HEALTH_PORT"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "healthPort"}}
    }
    assert app["properties"]["template"]["scale"]["minReplicas"] == "minReplicas"
    assert template.param("minReplicas")["default"] == 0
    assert main_template.param("consumerMinReplicas")["default"] == 0


def test_console_has_internal_ingress_by_default_and_one_replica(
    templates: dict[str, Template], main_template: Template
) -> None:
    template = templates[CONSOLE]
    app = _only(template, "Microsoft.App/containerApps")
    ingress = app["properties"]["configuration"]["ingress"]
    assert ingress["external"] == "externalIngress"
    assert template.param("externalIngress")["default"] is False
    assert main_template.param("consoleExternalIngress")["default"] is False
    params = body(main_template.modules()["console"])["params"]
    assert params["externalIngress"] == "consoleExternalIngress"
    assert ingress["allowInsecure"] is False
    assert ingress["targetPort"] == "port"
    assert template.param("port")["default"] == 8090
    probes = _probes(app)
    assert probes["Liveness"] == probes["Readiness"] == {"path": "/healthz", "port": "port"}
    scale = app["properties"]["template"]["scale"]
    assert scale == {"minReplicas": 1, "maxReplicas": 1}, "charts are sampled per replica"


def test_console_requires_entra_sign_in_and_fails_closed(
    templates: dict[str, Template], main_template: Template
) -> None:
    template = templates[CONSOLE]
    (auth,) = template.resources("Microsoft.App/containerApps/authConfigs").values()
    assert body(auth)["parent"] == "app"
    properties = body(auth)["properties"]
    assert properties["platform"] == {"enabled": True}
    assert properties["httpSettings"]["requireHttps"] is True
    # With an app registration: redirect to Entra; without one: 401 for every request.
    validation = properties["globalValidation"]["operator"]["operands"]
    assert validation["condition"] == "signInConfigured"
    assert validation["true_value"]["unauthenticatedClientAction"] == "RedirectToLoginPage"
    assert validation["true_value"]["redirectToProvider"] == "azureactivedirectory"
    assert validation["false_value"] == {"unauthenticatedClientAction": "Return401"}
    assert "excludedPaths" not in validation["true_value"]
    provider = template.variable("entraProvider")["azureActiveDirectory"]
    assert provider["enabled"] is True
    assert provider["registration"]["clientId"] == "authClientId"
    # The app trusts the platform's principal headers only in this mode.
    env = _container_env(template)
    assert env["CONSOLE_AUTH"] == "easyauth"
    assert env["CONSOLE_SECURE_COOKIES"] == "true"
    assert env["CONSOLE_SESSION_SECRET"] == "console-session-secret"
    # Secrets arrive as @secure() parameters, never as literals in the repository.
    for owner, name in (
        (template, "authClientSecret"),
        (template, "sessionSecret"),
        (main_template, "consoleAuthClientSecret"),
        (main_template, "consoleSessionSecret"),
    ):
        decorators = owner.param(name).get("decorators") or []
        assert {"type": "secure"} in decorators, name
    assert function_name(main_template.param("consoleSessionSecret")["default"]) == "new_guid"
    assert condition(main_template.modules()["console"]) == "consoleDeployed"


def test_consumer_scales_per_source_with_a_managed_identity(
    templates: dict[str, Template],
) -> None:
    """One rule per source; what each watches is planned in test_consumer_sources."""
    app = _only(templates[CONSUMER], "Microsoft.App/containerApps")
    rules = app["properties"]["template"]["scale"]["rules"]
    for rule in rules:
        custom = rule["custom"]
        assert custom["type"] == "azure-servicebus"
        assert custom["identity"] == "scalerIdentityId", "scale rule must use the identity"
        assert "auth" not in custom, "no connection-string secret on scale rules"
    assert [rule["name"] for rule in rules] == ["servicebus-audit", "servicebus-notifications"]


# Container Apps limits on probe settings (ContainerAppProbe in the Microsoft.App API).
PROBE_LIMITS = {
    "failureThreshold": (1, 10),
    "initialDelaySeconds": (1, 60),
    "periodSeconds": (1, 240),
    "timeoutSeconds": (1, 240),
}


@pytest.mark.parametrize("path", APPS)
def test_probe_settings_are_within_container_apps_limits(
    templates: dict[str, Template], path: str
) -> None:
    app = _only(templates[path], "Microsoft.App/containerApps")
    (container,) = app["properties"]["template"]["containers"]
    assert {probe["type"] for probe in container["probes"]} == {"Startup", "Liveness", "Readiness"}
    for probe in container["probes"]:
        for setting, (low, high) in PROBE_LIMITS.items():
            if setting in probe:
                assert low <= probe[setting] <= high, f"{probe['type']}.{setting}"


def test_apps_pull_images_with_the_pull_identity(templates: dict[str, Template]) -> None:
    for path in APPS:
        app = _only(templates[path], "Microsoft.App/containerApps")
        registries = app["properties"]["configuration"]["registries"]
        assert registries == [{"server": "registryLoginServer", "identity": "acrPullIdentityId"}]


# --- registry, database, monitoring ----------------------------------------------------------


def test_registry_has_no_admin_user_and_grants_acr_pull(
    templates: dict[str, Template], main_template: Template
) -> None:
    template = templates[REGISTRY]
    registry = _only(template, "Microsoft.ContainerRegistry/registries")
    assert registry["properties"]["adminUserEnabled"] is False
    assert registry["properties"]["anonymousPullEnabled"] is False
    pull = body(template.resource("acrPullAssignment"))["properties"]
    assert pull["principalId"] == "acrPullPrincipalId"
    assert pull["roleDefinitionId"]["function"]["parameters"]["resource_name_1"] == "acrPullRoleId"
    params = body(main_template.modules()["registry"])["params"]
    assert ref(params["acrPullRoleId"]) == "roles.acrPull"
    assert ref(params["acrPushRoleId"]) == "roles.acrPush"
    assert ref(params["acrPullPrincipalId"]) == "identities.outputs.acrPullPrincipalId"
    assert condition(template.resource("acrPushAssignment")) is not None


def test_postgres_is_optional_and_entra_only(
    templates: dict[str, Template], main_template: Template
) -> None:
    server = _only(templates[POSTGRES], "Microsoft.DBforPostgreSQL/flexibleServers")
    auth = server["properties"]["authConfig"]
    assert auth["activeDirectoryAuth"] == "Enabled"
    assert auth["passwordAuth"] == "Disabled"
    assert not {"administratorLogin", "administratorLoginPassword"} & set(server["properties"])
    assert condition(main_template.modules()["postgres"]) == "deployPostgres"
    assert main_template.param("deployPostgres")["default"] is False


def test_logs_flow_without_shared_keys(templates: dict[str, Template]) -> None:
    environment = _only(templates[ENVIRONMENT], "Microsoft.App/managedEnvironments")
    logs = environment["properties"]["appLogsConfiguration"]
    assert logs == {"destination": "azure-monitor"}
    for path, target in ((ENVIRONMENT, "environment"), (SERVICE_BUS, "namespace")):
        diagnostics = _only(templates[path], "Microsoft.Insights/diagnosticSettings")
        assert diagnostics["scope"] == target
        assert diagnostics["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    workspace = _only(templates[MONITORING], "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["features"]["disableLocalAuth"] is True
    insights = _only(templates[MONITORING], "Microsoft.Insights/components")
    assert ref(insights["properties"]["WorkspaceResourceId"]) == "workspace.id"


def test_api_versions_are_stable(templates: dict[str, Template]) -> None:
    for path, template in templates.items():
        for symbol, declaration in template.resources().items():
            if declaration["type"].lower() in PREVIEW_ONLY_TYPES:
                continue
            assert "preview" not in declaration["api_version"], f"{path}:{symbol}"


def test_main_deploys_at_subscription_scope(main_template: Template) -> None:
    assert main_template.tree["globals"]["scope"]["value"] == "subscription"
    for symbol, declaration in main_template.modules().items():
        assert body(declaration)["scope"] == "rg", symbol
