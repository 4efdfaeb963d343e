"""Session-wide fixtures: parsed Bicep templates and one checkov run per framework.

Every test module here marks itself ``xdist_group("infra")`` so that, under
``pytest -n N --dist loadgroup``, all infra tests share one worker and these
session fixtures (checkov takes seconds to start) run once.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.bicep import Template, parse_templates
from tests.infra.tools import (
    CUSTOM_CHECKS_DIR,
    DOCKER_DIR,
    INFRA_DIR,
    PIPELINE_FILE,
    REPO_ROOT,
    CheckovRun,
    finish_checkov,
    start_checkov,
)


@pytest.fixture(scope="session")
def bicep_paths() -> list[Path]:
    """Every Bicep file under infra/."""
    paths = sorted(INFRA_DIR.rglob("*.bicep"))
    assert paths, "no Bicep files under infra/"
    return paths


@pytest.fixture(scope="session")
def parsed_templates(bicep_paths: list[Path]) -> dict[str, Template]:
    """Every Bicep file parsed by pycep, parse errors included."""
    return parse_templates(bicep_paths)


@pytest.fixture(scope="session")
def templates(parsed_templates: dict[str, Template]) -> dict[str, Template]:
    """Every Bicep file parsed by pycep; fails if any file did not parse."""
    errors = {path: t.error for path, t in parsed_templates.items() if t.error}
    assert not errors, f"Bicep files pycep could not parse: {errors}"
    return parsed_templates


@pytest.fixture(scope="session")
def main_template(templates: dict[str, Template]) -> Template:
    """infra/main.bicep."""
    return templates["infra/main.bicep"]


@pytest.fixture(scope="session")
def dockerfiles() -> list[Path]:
    """The Dockerfiles under docker/."""
    paths = sorted(DOCKER_DIR.glob("*.Dockerfile"))
    assert paths, "no Dockerfiles under docker/"
    return paths


@pytest.fixture(scope="session")
def checkov_runs() -> Iterator[dict[str, CheckovRun]]:
    """checkov over Bicep (with infra/checkov custom checks), Dockerfiles and the pipeline.

    The three runs overlap; each is a separate process with JSON output.
    """
    started = {
        "bicep": start_checkov(
            "bicep",
            ["--directory", INFRA_DIR.relative_to(REPO_ROOT).as_posix()],
            "--external-checks-dir",
            CUSTOM_CHECKS_DIR.relative_to(REPO_ROOT).as_posix(),
        ),
        "dockerfile": start_checkov(
            "dockerfile", ["--directory", DOCKER_DIR.relative_to(REPO_ROOT).as_posix()]
        ),
        "azure_pipelines": start_checkov(
            "azure_pipelines", ["--file", PIPELINE_FILE.relative_to(REPO_ROOT).as_posix()]
        ),
    }
    try:
        yield {framework: finish_checkov(framework, p) for framework, p in started.items()}
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
