"""Project-specific checkov checks for infra/ (Bicep), loaded with ``--external-checks-dir``.

They encode the deployment's security rules that checkov has no built-in check for
(Service Bus, Container Apps, managed identities), so that every Bicep file with
deployable resources is really evaluated by checkov. Bicep expressions that cannot be
resolved statically (parameters, function calls) are parsed by pycep into nested dicts;
the checks only accept literal values where a literal is required.

This file runs inside checkov (the tools venv), not in the application's venv.
"""

from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

# Roles that must never be granted by these templates.
PRIVILEGED_ROLE_IDS = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",  # Role Based Access Control Administrator
}

# Scale rule types that read an Azure resource and so need credentials.
AZURE_SCALERS = {
    "azure-servicebus",
    "azure-queue",
    "azure-eventhub",
    "azure-blob",
    "azure-log-analytics",
    "azure-monitor",
}


def body(conf: dict[str, Any]) -> dict[str, Any]:
    """The resource body, unwrapped from ``for`` loops and ``if`` conditions."""
    while (
        isinstance(conf, dict) and "config" in conf and ("loop_type" in conf or "condition" in conf)
    ):
        conf = conf["config"]
    return conf


def dig(conf: Any, *path: str) -> Any:
    """``conf[path[0]][path[1]]...`` or None."""
    for key in path:
        if not isinstance(conf, dict):
            return None
        conf = conf.get(key)
    return conf


class _Check(BaseResourceCheck):
    def __init__(self, name: str, id: str, resources: tuple[str, ...]) -> None:
        super().__init__(
            name=name,
            id=id,
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=resources,
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        return CheckResult.PASSED if self.ok(body(conf)) else CheckResult.FAILED

    def ok(self, conf: dict[str, Any]) -> bool:
        raise NotImplementedError


class ServiceBusLocalAuthDisabled(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Service Bus namespace rejects SAS keys (disableLocalAuth: true)",
            "CKV_SBEV_1",
            ("Microsoft.ServiceBus/namespaces",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        return dig(conf, "properties", "disableLocalAuth") is True


class ServiceBusMinimumTls12(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Service Bus namespace requires TLS 1.2 or later",
            "CKV_SBEV_2",
            ("Microsoft.ServiceBus/namespaces",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        return dig(conf, "properties", "minimumTlsVersion") in ("1.2", "1.3")


class RoleAssignmentNotPrivileged(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Role assignment names a service principal and grants no Owner, Contributor "
            "or access-administration role",
            "CKV_SBEV_3",
            ("Microsoft.Authorization/roleAssignments",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        text = str(dig(conf, "properties", "roleDefinitionId")).lower()
        if any(role_id in text for role_id in PRIVILEGED_ROLE_IDS):
            return False
        return dig(conf, "properties", "principalType") == "ServicePrincipal"


class ContainerAppScaleRulesUseIdentity(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Container app scale rules authenticate with a managed identity, not secrets",
            "CKV_SBEV_4",
            ("Microsoft.App/containerApps",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        rules = dig(conf, "properties", "template", "scale", "rules") or []
        if not isinstance(rules, list):
            return False
        for rule in rules:
            if not isinstance(rule, dict):
                return False
            for kind, spec in rule.items():
                if kind == "name" or not isinstance(spec, dict):
                    continue
                if spec.get("auth"):
                    return False
                needs_credentials = kind == "azureQueue" or spec.get("type") in AZURE_SCALERS
                if needs_credentials and not spec.get("identity"):
                    return False
        return True


class ContainerAppHttpsOnly(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Container app ingress, if any, does not allow plain HTTP",
            "CKV_SBEV_5",
            ("Microsoft.App/containerApps",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        ingress = dig(conf, "properties", "configuration", "ingress")
        if ingress is None:
            return True
        return isinstance(ingress, dict) and ingress.get("allowInsecure") is False


class ContainerAppPullsWithIdentity(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Container app pulls images with a managed identity (no registry password)",
            "CKV_SBEV_6",
            ("Microsoft.App/containerApps",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        registries = dig(conf, "properties", "configuration", "registries") or []
        if not isinstance(registries, list) or not registries:
            return False
        return all(
            isinstance(r, dict) and r.get("identity") and "passwordSecretRef" not in r
            for r in registries
        )


class ContainerAppHasProbes(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Every container of the app has liveness and readiness probes",
            "CKV_SBEV_7",
            ("Microsoft.App/containerApps",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        containers = dig(conf, "properties", "template", "containers") or []
        if not isinstance(containers, list) or not containers:
            return False
        for container in containers:
            probes = container.get("probes") if isinstance(container, dict) else None
            kinds = {p.get("type") for p in probes or [] if isinstance(p, dict)}
            if not {"Liveness", "Readiness"} <= kinds:
                return False
        return True


class EnvironmentHasNoSharedKey(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Container Apps environment gets no Log Analytics shared key",
            "CKV_SBEV_8",
            ("Microsoft.App/managedEnvironments",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        logs = dig(conf, "properties", "appLogsConfiguration")
        if not isinstance(logs, dict):
            return False
        no_key = dig(logs, "logAnalyticsConfiguration", "sharedKey") is None
        return no_key and logs.get("destination") in ("azure-monitor", "log-analytics")


class LogAnalyticsLocalAuthDisabled(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Log Analytics workspace disables shared-key (local) authentication",
            "CKV_SBEV_9",
            ("Microsoft.OperationalInsights/workspaces",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        return dig(conf, "properties", "features", "disableLocalAuth") is True


class PostgresEntraOnly(_Check):
    def __init__(self) -> None:
        super().__init__(
            "PostgreSQL flexible server accepts Microsoft Entra authentication only",
            "CKV_SBEV_10",
            ("Microsoft.DBforPostgreSQL/flexibleServers",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        auth = dig(conf, "properties", "authConfig")
        return (
            isinstance(auth, dict)
            and auth.get("activeDirectoryAuth") == "Enabled"
            and auth.get("passwordAuth") == "Disabled"
        )


class ResourceIsTagged(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Taggable resource carries tags (azd-env-name and caller tags propagate)",
            "CKV_SBEV_11",
            (
                "Microsoft.Resources/resourceGroups",
                "Microsoft.ManagedIdentity/userAssignedIdentities",
                "Microsoft.ServiceBus/namespaces",
                "Microsoft.ContainerRegistry/registries",
                "Microsoft.OperationalInsights/workspaces",
                "Microsoft.Insights/components",
                "Microsoft.App/managedEnvironments",
                "Microsoft.App/containerApps",
                "Microsoft.DBforPostgreSQL/flexibleServers",
            ),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        return bool(conf.get("tags"))


class DiagnosticsSendAllLogs(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Diagnostic setting sends all log categories to a Log Analytics workspace",
            "CKV_SBEV_12",
            ("Microsoft.Insights/diagnosticSettings",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        props = conf.get("properties") or {}
        logs = props.get("logs") or []
        return bool(props.get("workspaceId")) and any(
            isinstance(entry, dict)
            and entry.get("categoryGroup") == "allLogs"
            and entry.get("enabled") is True
            for entry in logs
        )


def literal_defaults(properties: Any) -> dict[str, Any]:
    """The literal settings of a ``properties`` value: the object itself, or the first
    argument of ``union(defaults, overrides)``; empty when neither is a literal object.

    checkov substitutes variables before the checks run, matching them by name across
    files, so the modules give their defaults distinct names (topicDefaults, ...)."""
    if not isinstance(properties, dict):
        return {}
    call = properties.get("function")
    if isinstance(call, dict):
        if call.get("type") != "union":
            return {}
        first = (call.get("parameters") or {}).get("arg_1")
        return literal_defaults(first) if isinstance(first, dict) else {}
    return {} if "operator" in properties else properties


def string_leaves(value: Any) -> list[str]:
    """Every string in a (parsed) expression tree."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for child in value.values() for s in string_leaves(child)]
    if isinstance(value, list):
        return [s for child in value for s in string_leaves(child)]
    return []


class TopicDetectsDuplicates(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Service Bus topic detects duplicates by default (the producer's outbox relay "
            "may re-send after a crash)",
            "CKV_SBEV_13",
            ("Microsoft.ServiceBus/namespaces/topics",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        defaults = literal_defaults(conf.get("properties"))
        return defaults.get("requiresDuplicateDetection") is True and bool(
            defaults.get("duplicateDetectionHistoryTimeWindow")
        )


class SubscriptionDeadLetters(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Service Bus subscription dead-letters expired messages and filter errors and "
            "bounds deliveries by default (no message silently dropped or retried forever)",
            "CKV_SBEV_14",
            ("Microsoft.ServiceBus/namespaces/topics/subscriptions",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        defaults = literal_defaults(conf.get("properties"))
        return (
            defaults.get("deadLetteringOnMessageExpiration") is True
            and defaults.get("deadLetteringOnFilterEvaluationExceptions") is True
            and isinstance(defaults.get("maxDeliveryCount"), int)
        )


# ARM's filterType values (Microsoft.ServiceBus/namespaces/topics/subscriptions/rules).
RULE_FILTER_TYPES = {"SqlFilter", "CorrelationFilter"}


class RuleNamesItsFilterType(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Subscription rule sets filterType to SqlFilter or CorrelationFilter",
            "CKV_SBEV_15",
            ("Microsoft.ServiceBus/namespaces/topics/subscriptions/rules",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        # Literal or an expression choosing between literals: every filter-type word in it
        # must be one ARM accepts.
        words = {
            word
            for word in string_leaves(dig(conf, "properties", "filterType"))
            if word[:1].isupper() and word.endswith("Filter")
        }
        return bool(words) and words <= RULE_FILTER_TYPES


class RoleAssignmentHasResourceScope(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Role assignment names the resource it is scoped to (without `scope` it would "
            "cover the whole resource group)",
            "CKV_SBEV_16",
            ("Microsoft.Authorization/roleAssignments",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        return isinstance(conf.get("scope"), str) and bool(conf["scope"])


# Answers Container Apps authentication may give a request without a sign-in.
REFUSING_ACTIONS = {"RedirectToLoginPage", "Return401", "Return403"}


class ContainerAppAuthRequiresSignIn(_Check):
    def __init__(self) -> None:
        super().__init__(
            "Container Apps authentication is enabled and refuses requests without a sign-in",
            "CKV_SBEV_17",
            ("Microsoft.App/containerApps/authConfigs",),
        )

    def ok(self, conf: dict[str, Any]) -> bool:
        if dig(conf, "properties", "platform", "enabled") is not True:
            return False
        validation = dig(conf, "properties", "globalValidation")
        # `cond ? {...} : {...}`: every branch must refuse.
        operands = dig(validation, "operator", "operands")
        branches = (
            [operands.get("true_value"), operands.get("false_value")]
            if isinstance(operands, dict)
            else [validation]
        )
        return all(
            isinstance(b, dict)
            and b.get("unauthenticatedClientAction") in REFUSING_ACTIONS
            and not b.get("excludedPaths")
            for b in branches
        )


checks = [
    ServiceBusLocalAuthDisabled(),
    ServiceBusMinimumTls12(),
    RoleAssignmentNotPrivileged(),
    ContainerAppScaleRulesUseIdentity(),
    ContainerAppHttpsOnly(),
    ContainerAppPullsWithIdentity(),
    ContainerAppHasProbes(),
    EnvironmentHasNoSharedKey(),
    LogAnalyticsLocalAuthDisabled(),
    PostgresEntraOnly(),
    ResourceIsTagged(),
    DiagnosticsSendAllLogs(),
    TopicDetectsDuplicates(),
    SubscriptionDeadLetters(),
    RuleNamesItsFilterType(),
    RoleAssignmentHasResourceScope(),
    ContainerAppAuthRequiresSignIn(),
]
