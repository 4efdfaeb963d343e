"""The infrastructure checkers' environment holds exactly infra/requirements-check.txt.

That file is the lock ``make lock`` compiles from infra/requirements-check.in (uv pip
compile, hashes, every platform); ``make`` installs it with ``uv pip sync``.
"""

import json
import subprocess

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.infra.tools import INFRA_DIR, REPO_ROOT, require_tool, tool_env

pytestmark = pytest.mark.xdist_group("infra")

LOCK = INFRA_DIR / "requirements-check.txt"
INPUTS = INFRA_DIR / "requirements-check.in"
RELOCK = "run `make lock` and commit infra/requirements-check.txt"


def _requirements(text: str) -> list[Requirement]:
    """Requirement lines, without comments, hashes and line continuations."""
    joined = text.replace("\\\n", " ")
    lines = (line.split("#", 1)[0].split(" --hash", 1)[0].strip() for line in joined.splitlines())
    return [Requirement(line) for line in lines if line]


def _pins(python_env: dict[str, str]) -> dict[str, Version]:
    """The lock's ``{name: version}`` for the environment described by ``python_env``."""
    pins: dict[str, Version] = {}
    for requirement in _requirements(LOCK.read_text()):
        if requirement.marker is None or requirement.marker.evaluate(python_env):
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"not pinned in {LOCK.name}: {requirement}"
            pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def _infra_environment() -> tuple[dict[str, str], dict[str, Version]]:
    """The tools venv's marker environment and its installed ``{name: version}``."""
    script = (
        "import json, importlib.metadata as m, packaging.markers as k;"
        "print(json.dumps([k.default_environment(),"
        "{d.metadata['Name']: d.version for d in m.distributions()}]))"
    )
    completed = subprocess.run(
        [str(require_tool("python")), "-I", "-c", script],  # -I: not the checkout
        cwd=REPO_ROOT,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    markers, installed = json.loads(completed.stdout)
    return markers, {canonicalize_name(k): Version(v) for k, v in installed.items()}


def test_infra_lock_satisfies_its_inputs() -> None:
    pins = _pins({"python_version": "3.11", "python_full_version": "3.11.0"})
    for requirement in _requirements(INPUTS.read_text()):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {LOCK.name}: {RELOCK}"
        assert pins[name] in requirement.specifier, (
            f"{LOCK.name} pins {name} {pins[name]}, outside {requirement}: {RELOCK}"
        )


def test_infra_environment_has_exactly_the_locked_versions() -> None:
    markers, installed = _infra_environment()
    locked = _pins(markers)
    differ = {
        name: f"installed {installed.get(name, 'nothing')}, locked {version}"
        for name, version in locked.items()
        if installed.get(name) != version
    }
    extra = sorted(set(installed) - set(locked))
    hint = "run `make infra-tools` (uv pip sync infra/requirements-check.txt)"
    assert not differ, f"{differ}: {hint}"
    assert not extra, f"installed but not in {LOCK.name}: {extra}: {hint}"
