"""Every PRODUCER_* / CONSUMER_* / CONSOLE_* variable the deployment sets is one the apps read.

pydantic-settings ignores unknown variables (``extra="ignore"``), so a misspelt or renamed
variable in Bicep or a Dockerfile would silently fall back to a default in Azure.
"""

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from common.settings_groups import settings_groups
from console.settings import ConsoleSettings
from consumer.settings import ConsumerSettings
from producer.settings import ProducerSettings
from tools.settings_reference import variables

ROOT = Path(__file__).resolve().parents[2]
_NAME = r"((?:PRODUCER|CONSUMER|CONSOLE)_[A-Z0-9_]+)"
# Where a file *sets* a variable: Bicep env entries, Dockerfile ENV, pipeline env keys.
SETTERS: list[tuple[list[Path], re.Pattern[str]]] = [
    (sorted((ROOT / "infra").rglob("*.bicep")), re.compile(rf"name:\s*'{_NAME}'")),
    (sorted((ROOT / "docker").glob("*.Dockerfile")), re.compile(rf"\b{_NAME}=")),
    ([ROOT / "azure-pipelines.yml"], re.compile(rf"^\s*{_NAME}:", re.MULTILINE)),
]
SETTINGS: dict[str, type[BaseSettings]] = {
    "PRODUCER_": ProducerSettings,
    "CONSUMER_": ConsumerSettings,
    "CONSOLE_": ConsoleSettings,
}


def deployment_variables() -> set[tuple[str, str]]:
    found = set()
    for paths, pattern in SETTERS:
        for path in paths:
            for name in pattern.findall(path.read_text(encoding="utf-8")):
                found.add((path.relative_to(ROOT).as_posix(), name))
    return found


def test_the_deployment_sets_variables() -> None:
    names = {name for _, name in deployment_variables()}
    assert {"PRODUCER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE", "PRODUCER_HOST"} <= names
    assert {"CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE", "CONSUMER_AUDIT_STORE_URL"} <= names
    assert {
        "CONSOLE_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE",
        "CONSOLE_AUTH",
        "CONSOLE_SECURE_COOKIES",
        "CONSOLE_SESSION_SECRET",
        "CONSOLE_OUTBOX_DATABASE_URL",
        "CONSOLE_AUDIT_STORE_URL",
        "CONSOLE_APPINSIGHTS_TRACE_URL",
        "CONSOLE_ENVIRONMENT",
        "CONSOLE_HOST",
    } <= names


@pytest.mark.parametrize(("path", "name"), sorted(deployment_variables()))
def test_variable_names_a_settings_field(path: str, name: str) -> None:
    prefix = name[: name.index("_") + 1]
    settings = SETTINGS[prefix]
    # The reference's variable list also covers settings groups (CONSUMER_SMTP_HOST is
    # ``settings.smtp.host``) and nested keys (CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS).
    read = {
        *variables(settings),
        *(v for g in settings_groups(settings).values() for v in variables(g)),
    }
    assert name in read or name.split("__")[0] in read, (
        f"{path} sets {name}, which {settings.__name__} ignores"
    )
