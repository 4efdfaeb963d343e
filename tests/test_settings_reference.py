"""``docs/settings.md`` lists every variable the apps read, as the settings classes define it."""

import ast
from datetime import timedelta
from pathlib import Path

import pytest

from common.settings_groups import settings_group
from consumer.settings import ConsumerSettings, SmtpSettings, WebhookSettings
from producer.settings import ProducerSettings
from tools import settings_reference
from tools.processes import ROOT

SETTINGS_MD = ROOT / "docs" / "settings.md"


def test_docs_settings_md_is_current() -> None:
    expected = settings_reference.render(settings_reference.components())
    current = SETTINGS_MD.read_text(encoding="utf-8") if SETTINGS_MD.exists() else ""
    assert current == expected, (
        "docs/settings.md is stale: run `python -m tools.settings_reference` and commit it"
    )


def test_every_variable_has_a_meaning() -> None:
    missing = settings_reference.undocumented(settings_reference.components())
    assert missing == [], (
        "describe these in the settings class (Field(description=...) or its "
        f"Attributes: docstring), then run python -m tools.settings_reference: {missing}"
    )


def test_every_settings_class_in_the_sources_is_covered() -> None:
    found = settings_reference.settings_classes()
    assert ProducerSettings in found
    assert ConsumerSettings in found
    assert {SmtpSettings, WebhookSettings} <= set(found)
    documented = SETTINGS_MD.read_text(encoding="utf-8")
    for settings in found:
        prefix = str(settings.model_config.get("env_prefix", "")).upper()
        for name, info in settings.model_fields.items():
            if settings_group(info.annotation) is not None:
                continue  # read under the group class's own prefix, checked as that class
            variable = f"{prefix}{name.upper()}"
            assert f"`{variable}`" in documented, f"{settings.__qualname__} reads {variable}"


def _environment_names(path: Path) -> set[str]:
    """Names read with ``os.environ.get("X")``, ``os.getenv("X")`` or ``os.environ["X"]``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            function = ast.unparse(node.func)
            if function in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ",):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def test_variables_read_directly_are_documented() -> None:
    documented = SETTINGS_MD.read_text(encoding="utf-8")
    read = {
        name
        for package in settings_reference.PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for name in _environment_names(path)
    }
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in read
    assert sorted(name for name in read if f"`{name}`" not in documented) == []


def test_documented_names_reach_the_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """The names the reference derives are the ones pydantic-settings reads."""
    monkeypatch.setenv("CONSUMER_SERVICEBUS_CONNECTION_STRING", "Endpoint=sb://127.0.0.1/;x=y")
    monkeypatch.setenv("CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS", "3")
    monkeypatch.setenv("CONSUMER_HEALTH_PORT", "0")
    monkeypatch.setenv("CONSUMER_SMTP_PORT", "2525")
    monkeypatch.setenv("CONSUMER_WEBHOOK_TIMEOUT", "PT20S")
    documented = SETTINGS_MD.read_text(encoding="utf-8")
    assert "`CONSUMER_EMAIL_RETRY__DELAYED_ATTEMPTS`" in documented
    assert "`CONSUMER_SMTP_PORT`" in documented
    assert "`CONSUMER_WEBHOOK_TIMEOUT`" in documented
    settings = ConsumerSettings()
    assert settings.email_retry.delayed_attempts == 3
    assert settings.health_port == 0
    assert settings.smtp.port == 2525
    assert settings.webhook.timeout == timedelta(seconds=20)


def test_check_fails_on_a_stale_file_and_says_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "settings.md"
    stale.write_text("# Settings reference\n", encoding="utf-8")

    assert settings_reference.main(["--check", "--output", str(stale)]) == 1
    assert "run python -m tools.settings_reference" in capsys.readouterr().err

    assert settings_reference.main(["--output", str(stale)]) == 0
    assert settings_reference.main(["--check", "--output", str(stale)]) == 0
    assert "`PRODUCER_API_KEYS`" in stale.read_text(encoding="utf-8")
