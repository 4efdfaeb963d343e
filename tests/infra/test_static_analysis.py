"""checkov, hadolint, check-jsonschema (and the bicep CLI where installed) over the infra files.

checkov silently skips Bicep it cannot parse, so besides "zero failed checks" these
tests assert that checkov evaluated every file: no parsing errors, at least one check
result per file, and the project's own checks (infra/checkov) loaded.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.bicep import Template
from tests.infra.tools import (
    CUSTOM_CHECKS_DIR,
    PIPELINE_FILE,
    REPO_ROOT,
    CheckovRun,
    pipelines_schema,
    require_tool,
    tool_env,
    vendored_pipelines_schema,
)

pytestmark = pytest.mark.xdist_group("infra")

CUSTOM_CHECK_IDS = {f"CKV_SBEV_{n}" for n in range(1, 18)}


def _failures(run: CheckovRun) -> list[str]:
    return [
        f"{r['check_id']} {r['file_path']} {r['resource']}: {r['check_name']}"
        for r in run.records("failed")
    ]


def _checks_per_file(run: CheckovRun) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in run.all_records():
        path = record["file_path"].lstrip("/")
        counts[path] = counts.get(path, 0) + 1
    return counts


def test_every_bicep_file_parses(parsed_templates: dict[str, Template]) -> None:
    """pycep (checkov's Bicep parser) reads every file and finds declarations in it."""
    for path, template in parsed_templates.items():
        assert template.error is None, f"{path}: {template.error}"
        declared = template.resources() or template.modules()
        assert declared, f"{path}: parsed, but no resources or modules found"


@pytest.mark.parametrize("framework", ["bicep", "dockerfile", "azure_pipelines"])
def test_checkov_reports_no_failed_checks(
    checkov_runs: dict[str, CheckovRun], framework: str
) -> None:
    run = checkov_runs[framework]
    assert not _failures(run), "\n".join(_failures(run))
    assert run.returncode == 0, run.stderr[-4000:]


@pytest.mark.parametrize("framework", ["bicep", "dockerfile", "azure_pipelines"])
def test_checkov_had_no_parsing_errors(checkov_runs: dict[str, CheckovRun], framework: str) -> None:
    run = checkov_runs[framework]
    assert run.results.get("parsing_errors", []) == []
    assert run.report["summary"]["parsing_errors"] == 0


@pytest.mark.parametrize("framework", ["bicep", "dockerfile", "azure_pipelines"])
def test_checkov_skips_are_justified(checkov_runs: dict[str, CheckovRun], framework: str) -> None:
    for record in checkov_runs[framework].records("skipped"):
        reason = (record.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason.strip()) >= 40, f"{record['check_id']} skipped without a reason"


def test_checkov_evaluated_every_bicep_file(
    checkov_runs: dict[str, CheckovRun], templates: dict[str, Template]
) -> None:
    """Each file that declares a deployable resource got check results from checkov."""
    checked = _checks_per_file(checkov_runs["bicep"])
    for path, template in templates.items():
        deployable = [r for r in template.resources().values() if not r["existing"]]
        relative = Path(path).relative_to("infra").as_posix()
        if deployable:
            assert checked.get(relative, 0) > 0, f"checkov evaluated nothing in {path}"


def test_checkov_evaluated_every_dockerfile(
    checkov_runs: dict[str, CheckovRun], dockerfiles: list[Path]
) -> None:
    checked = _checks_per_file(checkov_runs["dockerfile"])
    for dockerfile in dockerfiles:
        assert checked.get(dockerfile.name, 0) > 0, f"checkov evaluated nothing in {dockerfile}"


def test_checkov_evaluated_the_pipeline(checkov_runs: dict[str, CheckovRun]) -> None:
    checked = _checks_per_file(checkov_runs["azure_pipelines"])
    assert checked.get(PIPELINE_FILE.name, 0) > 0, checked


def test_project_checkov_checks_ran(checkov_runs: dict[str, CheckovRun]) -> None:
    """The infra/checkov checks loaded (checkov only logs a broken external check)."""
    ran = {record["check_id"] for record in checkov_runs["bicep"].all_records()}
    assert ran >= CUSTOM_CHECK_IDS, f"not run: {sorted(CUSTOM_CHECK_IDS - ran)}"
    assert (CUSTOM_CHECKS_DIR / "__init__.py").is_file()


def test_hadolint_is_clean(dockerfiles: list[Path]) -> None:
    hadolint = require_tool("hadolint")
    for dockerfile in dockerfiles:
        completed = subprocess.run(
            [str(hadolint), "--no-color", str(dockerfile)],
            cwd=REPO_ROOT,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, (
            f"{dockerfile.name}:\n{completed.stdout}{completed.stderr}"
        )


def test_pipeline_matches_azure_pipelines_schema(tmp_path: Path) -> None:
    # The schema's patterns are not valid Unicode-mode ECMAScript regexes (the default
    # variant crashes on them), hence the non-Unicode variant.
    completed = subprocess.run(
        [
            str(require_tool("check-jsonschema")),
            "--regex-variant",
            "nonunicode",
            "--data-transform",
            "azure-pipelines",
            "--schemafile",
            str(pipelines_schema(tmp_path)),
            str(PIPELINE_FILE),
        ],
        cwd=REPO_ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_pipelines_schema_only_gains_the_missing_task(tmp_path: Path) -> None:
    """The schema used above is the vendored one plus one task entry, nothing else."""
    extended = json.loads(pipelines_schema(tmp_path).read_text())
    tasks = extended["definitions"]["task"]["anyOf"]
    added = [t for t in tasks if "PublishCodeCoverageResults@2" in json.dumps(t["properties"])]
    assert len(added) == 1
    rest = [t for t in tasks if t is not added[0]]
    original = json.loads(vendored_pipelines_schema())
    assert rest == original["definitions"]["task"]["anyOf"]
    del extended["definitions"]["task"]["anyOf"], original["definitions"]["task"]["anyOf"]
    assert extended == original


def test_bicep_cli_builds_and_lints(tmp_path: Path) -> None:
    """Compile and lint with the real Bicep compiler where it is installed."""
    bicep = shutil.which("bicep")
    if bicep is None:
        pytest.skip(
            "bicep CLI not installed here: Bicep is checked by pycep and checkov only "
            "(install the bicep CLI to also compile and lint)"
        )
    main = REPO_ROOT / "infra" / "main.bicep"
    for command in (
        [bicep, "build", str(main), "--outdir", str(tmp_path)],
        [bicep, "lint", str(main)],
    ):
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=300, check=False
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
