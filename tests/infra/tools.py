"""Where the infrastructure checking tools live, and how to run them.

checkov pins dependencies that clash with the application's (see
infra/requirements-check.txt), so the tools live in their own virtual environment.
``INFRA_TOOLS_BIN`` names its ``bin`` directory (default ``.venv-infra/bin`` in the
repository): it must hold ``checkov``, ``hadolint``, ``check-jsonschema`` and the venv's
``python`` (which imports pycep and PyYAML). When a tool is missing the test fails under
``CI=true`` and is skipped, with the reason, everywhere else.
"""

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
DOCKER_DIR = REPO_ROOT / "docker"
PIPELINE_FILE = REPO_ROOT / "azure-pipelines.yml"
CUSTOM_CHECKS_DIR = INFRA_DIR / "checkov"

INSTALL_HINT = (
    "create it with `make infra-tools` (uv pip sync of the lock infra/requirements-check.txt; "
    "without uv: `python3 -m venv .venv-infra && .venv-infra/bin/python -m pip install "
    "-r infra/requirements-check.txt`), or point INFRA_TOOLS_BIN at another bin directory"
)


def in_ci() -> bool:
    """True when the ``CI`` environment variable says so (Azure Pipelines, this repo's CI)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tools_bin() -> Path:
    """The directory holding checkov, hadolint, check-jsonschema and their python."""
    configured = os.environ.get("INFRA_TOOLS_BIN")
    if not configured:
        return REPO_ROOT / ".venv-infra" / "bin"
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def require_tool(name: str) -> Path:
    """Path of an executable in :func:`tools_bin`; fails under CI, skips otherwise.

    Raises:
        pytest.fail.Exception: the tool is missing and ``CI`` is set.
        pytest.skip.Exception: the tool is missing outside CI.
    """
    path = tools_bin() / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"{name} not found in {tools_bin()}: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def tool_env() -> dict[str, str]:
    """Environment for the tools: no bytecode in the repo, no colours in output."""
    env = dict(os.environ)
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1", "LOG_LEVEL": "WARNING"})
    return env


@dataclass(frozen=True)
class CheckovRun:
    """One checkov run over one framework, with its JSON report.

    Attributes:
        framework: checkov framework name (``bicep``, ``dockerfile``, ...).
        returncode: checkov's exit code (1 when a check failed).
        report: the parsed ``--output json`` report for the framework.
        stderr: checkov's log output, for failure messages.
    """

    framework: str
    returncode: int
    report: dict[str, Any]
    stderr: str

    @property
    def results(self) -> dict[str, Any]:
        """The ``results`` section (passed/failed/skipped checks, parsing errors)."""
        results: dict[str, Any] = self.report.get("results", {})
        return results

    def records(self, kind: str) -> list[dict[str, Any]]:
        """``passed``, ``failed`` or ``skipped`` check records."""
        records: list[dict[str, Any]] = self.results.get(f"{kind}_checks", [])
        return records

    def all_records(self) -> list[dict[str, Any]]:
        """Every check record, whatever its result."""
        return self.records("passed") + self.records("failed") + self.records("skipped")


def checkov_command(framework: str, targets: list[str], *extra: str) -> list[str]:
    """checkov's command line for one framework; no network (``--skip-download``)."""
    return [
        str(require_tool("checkov")),
        *targets,
        "--framework",
        framework,
        "--output",
        "json",
        "--compact",
        "--skip-download",
        *extra,
    ]


def start_checkov(framework: str, targets: list[str], *extra: str) -> subprocess.Popen[str]:
    """Start checkov in the background (checkov takes seconds to start; runs overlap)."""
    return subprocess.Popen(
        checkov_command(framework, targets, *extra),
        cwd=REPO_ROOT,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_checkov(framework: str, process: subprocess.Popen[str]) -> CheckovRun:
    """Wait for a checkov run and parse its report.

    Raises:
        AssertionError: checkov crashed or printed no JSON report for the framework.
    """
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode in (0, 1), f"checkov ({framework}) crashed:\n{stderr[-4000:]}"
    try:
        parsed: Any = json.loads(stdout)
    except json.JSONDecodeError as error:
        raise AssertionError(f"checkov ({framework}) printed no JSON: {stdout[:2000]}") from error
    reports = parsed if isinstance(parsed, list) else [parsed]
    for report in reports:
        if isinstance(report, dict) and report.get("check_type") == framework:
            return CheckovRun(framework, process.returncode, report, stderr)
    raise AssertionError(
        f"checkov printed no {framework} report (found no files?): {stdout[:2000]}"
    )


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with the tools venv's PyYAML (the app venv has no stubs for it)."""
    completed = subprocess.run(
        [
            str(require_tool("python")),
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            str(path),
        ],
        cwd=REPO_ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout)


# PublishCodeCoverageResults@2 as documented at
# https://learn.microsoft.com/azure/devops/pipelines/tasks/reference/publish-code-coverage-results-v2
# (the vendored schema, generated from an older task list, has only the deprecated @1).
_COVERAGE_V2_TASK: dict[str, Any] = {
    "properties": {
        "task": {
            "description": "Publish code coverage results v2",
            "ignoreCase": "value",
            "pattern": "^PublishCodeCoverageResults@2$",
        },
        "inputs": {
            "description": "Publish code coverage results v2 inputs",
            "properties": {
                "summaryFileLocation": {"type": "string", "ignoreCase": "key"},
                "pathToSources": {"type": "string", "ignoreCase": "key"},
                "failIfCoverageEmpty": {"type": "boolean", "ignoreCase": "key"},
            },
            "additionalProperties": False,
            "required": ["summaryFileLocation"],
        },
    },
    "firstProperty": ["task"],
    "required": ["task", "inputs"],
}


def vendored_pipelines_schema() -> str:
    """The Azure Pipelines schema that check-jsonschema ships, as JSON text."""
    completed = subprocess.run(
        [
            str(require_tool("python")),
            "-c",
            "import importlib.resources as r, sys; sys.stdout.write(r.files("
            "'check_jsonschema.builtin_schemas.vendor').joinpath('azure-pipelines.json')"
            ".read_text(encoding='utf-8'))",
        ],
        cwd=REPO_ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


def pipelines_schema(directory: Path) -> Path:
    """The vendored schema plus ``PublishCodeCoverageResults@2``, written into ``directory``.

    Returns:
        Path of the JSON schema file (the vendored one unchanged if it knows the task).
    """
    schema = json.loads(vendored_pipelines_schema())
    tasks: list[dict[str, Any]] = schema["definitions"]["task"]["anyOf"]
    if not any("PublishCodeCoverageResults@2" in json.dumps(t.get("properties")) for t in tasks):
        tasks.append(_COVERAGE_V2_TASK)
    path = directory / "azure-pipelines.schema.json"
    path.write_text(json.dumps(schema))
    return path
