"""azd wiring, parameters, Dockerfiles, .dockerignore and the pipeline's shape."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import Template, body, dig
from tests.infra.tools import PIPELINE_FILE, REPO_ROOT, load_yaml

pytestmark = pytest.mark.xdist_group("infra")

COMPONENTS = {
    # component: (port env var, default port, app module)
    "producer": ("PRODUCER_PORT", 8000, "infra/modules/producer-app.bicep"),
    "consumer": ("CONSUMER_HEALTH_PORT", 8081, "infra/modules/consumer-app.bicep"),
    "console": ("CONSOLE_PORT", 8090, "infra/modules/console-app.bicep"),
}
# Application packages an image may copy besides its own: the console reads the producer's
# outbox and runs the consumer's DLQ code.
USES = {"producer": set(), "consumer": set(), "console": {"producer", "consumer"}}
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


# --- azd ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azure_yaml() -> Any:
    return load_yaml(REPO_ROOT / "azure.yaml")


def test_azd_project_points_at_main_bicep(azure_yaml: Any) -> None:
    infra = azure_yaml["infra"]
    assert infra["provider"] == "bicep"
    assert (REPO_ROOT / infra["path"] / f"{infra['module']}.bicep").is_file()
    assert (REPO_ROOT / infra["path"] / f"{infra['module']}.parameters.json").is_file()


def test_azd_services_build_our_dockerfiles(
    azure_yaml: Any, templates: dict[str, Template]
) -> None:
    assert set(azure_yaml["services"]) == set(COMPONENTS)
    for name, service in azure_yaml["services"].items():
        assert service["host"] == "containerapp"
        project = REPO_ROOT / service["project"]
        assert (project / service["docker"]["path"]).resolve() == (
            REPO_ROOT / "docker" / f"{name}.Dockerfile"
        )
        assert (project / service["docker"]["context"]).resolve() == REPO_ROOT
        # azd finds the app to deploy by this tag.
        (app,) = templates[COMPONENTS[name][2]].resources("Microsoft.App/containerApps").values()
        tags = body(app)["tags"]["function"]["parameters"]["arg_2"]
        assert tags == {"'azd-service-name'": name}


def test_parameters_file_matches_main(main_template: Template) -> None:
    parameters = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())
    given = parameters["parameters"]
    declared = main_template.section("parameters")
    assert set(given) <= set(declared), f"unknown: {set(given) - set(declared)}"
    required = {name for name, d in declared.items() if "default" not in d}
    assert required <= set(given), f"not provided: {required - set(given)}"
    for name, entry in given.items():
        if name == "serviceBusTopics" and isinstance(entry["value"], list):
            continue  # docs/deploy.md: azd users may list topics here; test_topics types them
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", entry["value"]), name


def test_main_outputs_what_azd_and_the_pipeline_read(main_template: Template) -> None:
    outputs = main_template.section("outputs")
    for name in (
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_CONTAINER_REGISTRY_ENDPOINT",
        "AZURE_CONTAINER_ENVIRONMENT_NAME",
        "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE",
        "PRODUCER_URL",
        "producerFqdn",
        "CONSOLE_URL",
    ):
        assert name in outputs, name


# --- images -----------------------------------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_image_is_multi_stage_on_a_pinned_slim_base(component: str) -> None:
    instructions = _instructions(REPO_ROOT / "docker" / f"{component}.Dockerfile")
    stages = [args.split() for kind, args in instructions if kind == "FROM"]
    assert len(stages) >= 2, "build and runtime stages"
    images = {stage[0] for stage in stages}
    assert len(images) == 1, f"stages use different bases: {images}"
    assert BASE_IMAGE.match(images.pop())
    assert [stage[-1] for stage in stages] == ["build", "runtime"]


def _makefile_uv_version() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile pins uv (UV_VERSION := x.y.z)"
    return match.group(1)


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_image_installs_exactly_the_lock_for_its_component(component: str) -> None:
    instructions = _instructions(REPO_ROOT / "docker" / f"{component}.Dockerfile")
    build = instructions[: max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM")]
    runs = [args for kind, args in build if kind == "RUN"]
    # uv from PyPI, the Makefile's version; then only `uv sync` of the locked extra.
    assert runs[0] == f"pip install --no-cache-dir uv=={_makefile_uv_version()}"
    sync = f"uv sync --locked --no-dev --extra {component}"
    assert runs[1:] == [
        f"{sync} --no-install-project --no-editable",
        f"{sync} --no-editable",
    ]
    env = " ".join(args for kind, args in build if kind == "ENV")
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in env
    assert "UV_PYTHON_DOWNLOADS=never" in env
    # The lock is in the image's build context, and no version is repeated beside it.
    copies = [args.split() for kind, args in build if kind == "COPY"]
    assert copies[0] == ["pyproject.toml", "uv.lock", "./"], "dependencies before the code"
    text = (REPO_ROOT / "docker" / f"{component}.Dockerfile").read_text()
    assert re.findall(r"[\w.-]+==[\w.]+", text) == [f"uv=={_makefile_uv_version()}"]
    copied = {args[0] for args in copies}
    others = set(COMPONENTS) - {component} - USES[component]
    assert component in copied
    assert USES[component] <= copied
    assert not {*others, "emulator", "tests", "tools", "."} & copied
    runtime = instructions[len(build) :]
    assert [a for k, a in runtime if k == "COPY"] == ["--from=build /opt/venv /opt/venv"]
    assert not [a for k, a in runtime if k == "RUN" and ("pip" in a or "uv" in a.split())]


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_image_runs_as_non_root_with_a_healthcheck(component: str) -> None:
    port_var, port, _ = COMPONENTS[component]
    instructions = _instructions(REPO_ROOT / "docker" / f"{component}.Dockerfile")
    runtime = instructions[max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM") :]
    users = [args for kind, args in runtime if kind == "USER"]
    assert users, "runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"numeric uid, not a name: {users[-1]}"
    assert int(uid) >= 1000, users[-1]
    (healthcheck,) = [args for kind, args in runtime if kind == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert port_var in healthcheck
    env = " ".join(args for kind, args in runtime if kind == "ENV")
    assert f"{port_var}={port}" in env
    (entrypoint,) = [args for kind, args in runtime if kind == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", component]


def test_dockerignore_allows_only_what_the_images_need() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "contracts",
        "common",
        "producer",
        "consumer",
        "console",
    } <= allowed
    assert not {"emulator", "tests", "tools", ".venv", ".venv-infra", "infra", ".git"} & allowed


# --- pipeline ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline() -> Any:
    return load_yaml(PIPELINE_FILE)


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job.get("steps") or dig(
        job, "strategy", "runOnce", "deploy", "steps"
    )
    return steps


def _stages(pipeline: Any) -> dict[str, Any]:
    return {stage["stage"]: stage for stage in pipeline["stages"]}


def _test_steps(pipeline: Any) -> list[dict[str, Any]]:
    (test_job,) = _stages(pipeline)["test"]["jobs"]
    return _steps(test_job)


def test_pipeline_stages_test_build_preview_deploy(pipeline: Any) -> None:
    stages = _stages(pipeline)
    assert list(stages) == ["test", "build", "preview", "deploy"]
    assert stages["build"]["dependsOn"] == "test"
    assert stages["preview"]["dependsOn"] == "build"
    assert stages["deploy"]["dependsOn"] == "preview"
    scripts = [step.get("script") for step in _test_steps(pipeline)]
    assert "make test" in scripts
    (make_test,) = [step for step in _test_steps(pipeline) if step.get("script") == "make test"]
    assert make_test["env"]["CI"] == "true", "infra tools must be required in CI"


def test_pipeline_installs_from_the_lock_with_a_cache_keyed_on_it(pipeline: Any) -> None:
    steps = _test_steps(pipeline)
    kinds = [step.get("task") or step.get("script") for step in steps]
    (cache,) = [step for step in steps if step.get("task") == "Cache@2"]
    key = [part.strip() for part in cache["inputs"]["key"].split("|")]
    assert {"uv.lock", "infra/requirements-check.txt"} <= set(key)
    (job,) = _stages(pipeline)["test"]["jobs"]
    assert cache["inputs"]["path"] == "$(UV_CACHE_DIR)"
    assert "UV_CACHE_DIR" in job["variables"]
    # A stale lock fails its own step, before anything is installed; then make test,
    # which installs with `uv sync --locked`. No version is named in the pipeline.
    assert kinds.index("Cache@2") < kinds.index("make lock-check") < kinds.index("make test")
    assert not re.search(r"pip install|==\d", PIPELINE_FILE.read_text())


def test_pipeline_publishes_test_results_and_coverage(pipeline: Any) -> None:
    steps = _test_steps(pipeline)
    (make_test,) = [step for step in steps if step.get("script") == "make test"]
    pytest_args = make_test["env"]["PYTEST_ARGS"].split()
    junit = next(a.split("=", 1)[1] for a in pytest_args if a.startswith("--junitxml="))
    assert "--cov" in pytest_args
    coverage = next(a.split(":", 1)[1] for a in pytest_args if a.startswith("--cov-report=xml:"))
    (results,) = [step for step in steps if step.get("task") == "PublishTestResults@2"]
    assert results["inputs"]["testResultsFormat"] == "JUnit"
    assert results["inputs"]["testResultsFiles"] == junit
    (published,) = [s for s in steps if s.get("task") == "PublishCodeCoverageResults@2"]
    assert published["inputs"]["summaryFileLocation"] == coverage
    # Failed tests are exactly when the results matter.
    assert results["condition"] == published["condition"] == "succeededOrFailed()"
    assert "PYTEST_ARGS" in (REPO_ROOT / "Makefile").read_text()


def _parameters(script: str) -> set[str]:
    return set(re.findall(r"^\s+(\w+)=", script, re.MULTILINE))


def test_pipeline_previews_changes_before_the_approved_deploy(pipeline: Any) -> None:
    stages = _stages(pipeline)
    (whatif_job,) = stages["preview"]["jobs"]
    assert "environment" not in whatif_job, "the preview must not wait for the approvals"
    (whatif,) = [s for s in _steps(whatif_job) if s.get("task", "").startswith("AzureCLI@")]
    script = whatif["inputs"]["inlineScript"]
    assert "az deployment sub what-if" in script
    assert "--template-file infra/main.bicep" in script
    assert "##vso[task.uploadsummary]" in script, "the changes are shown on the run's page"
    assert "--output none" not in script
    (deploy_job,) = stages["deploy"]["jobs"]
    (create,) = [s for s in _steps(deploy_job) if s.get("task", "").startswith("AzureCLI@")]
    assert _parameters(script) == _parameters(create["inputs"]["inlineScript"]), (
        "the preview shows the deployment the deploy stage makes"
    )


def test_pipeline_names_connections_and_groups_by_parameter(pipeline: Any) -> None:
    names = {parameter["name"] for parameter in pipeline["parameters"]}
    assert {"azureServiceConnection", "variableGroup", "deploymentEnvironment"} <= names
    for stage in pipeline["stages"][1:]:
        assert stage["variables"] == [{"group": "${{ parameters.variableGroup }}"}]
        for job in stage["jobs"]:
            for step in _steps(job):
                if step.get("task", "").startswith("AzureCLI@"):
                    assert step["inputs"]["azureSubscription"] == (
                        "${{ parameters.azureServiceConnection }}"
                    )


def test_pipeline_builds_pushes_deploys_and_smoke_checks(pipeline: Any) -> None:
    stages = {stage["stage"]: stage for stage in pipeline["stages"]}
    build_scripts = " ".join(
        step["inputs"]["inlineScript"]
        for job in stages["build"]["jobs"]
        for step in _steps(job)
        if "inputs" in step
    )
    assert "az acr login" in build_scripts
    assert "docker/${component}.Dockerfile" in build_scripts
    assert "docker push" in build_scripts
    (deploy_job,) = stages["deploy"]["jobs"]
    assert deploy_job["environment"] == "${{ parameters.deploymentEnvironment }}"
    deploy_text = json.dumps(_steps(deploy_job))
    assert "az deployment sub create" in deploy_text
    assert "--template-file infra/main.bicep" in deploy_text
    assert "/readyz" in deploy_text
    assert "curl --fail" in deploy_text


def test_pipeline_holds_no_secrets() -> None:
    text = PIPELINE_FILE.read_text()
    assert not re.search(r"(?i)(password|secret|sharedaccesskey|accountkey)\s*[:=]", text)
    assert "issecret=true" not in text.lower()
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
