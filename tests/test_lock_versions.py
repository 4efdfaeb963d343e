"""The development environment holds exactly uv.lock, and a stale lock stops ``make test``.

``make`` installs ``.venv`` with ``uv sync --locked --extra dev`` (see the Makefile); the
images and the pipeline install from the same uv.lock. These tests compare what is
installed (``importlib.metadata``) with what uv exports from the lock, and run the
Makefile's lock check on a copy whose pyproject.toml changed without re-locking. No
index is contacted (``--frozen`` / ``--offline``).
"""

import os
import shutil
import subprocess
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.processes import ROOT

PROJECT = "servicebus-events"


def uv() -> str:
    """The uv the Makefile uses: ``$UV`` (set by ``make test``), .venv-uv's, or PATH's.

    Raises:
        AssertionError: no uv anywhere (``make test`` installs one into .venv-uv).
    """
    candidates = [os.environ.get("UV", ""), str(ROOT / ".venv-uv" / "bin" / "uv"), "uv"]
    for candidate in filter(None, candidates):
        # A path is the repository's (as the Makefile passes it); a bare name is PATH's.
        found = shutil.which(ROOT / candidate if "/" in candidate else candidate)
        if found:
            return str(Path(found).absolute())
    raise AssertionError("uv not found: run `make test` (it installs uv into .venv-uv) or set UV")


def locked_versions(*extras: str) -> dict[str, str]:
    """``{canonical name: version}`` that uv.lock gives this interpreter and platform."""
    exported = subprocess.run(
        [uv(), "export", "--frozen", "--format", "requirements.txt", "--no-hashes"]
        + ["--no-header", "--no-annotate", "--no-emit-project"]
        + [arg for extra in extras for arg in ("--extra", extra)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pins: dict[str, str] = {}
    for line in exported.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def test_development_environment_has_exactly_the_locked_versions() -> None:
    locked = locked_versions("dev")
    installed: dict[str, str] = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in distributions()
        if canonicalize_name(dist.metadata["Name"]) != PROJECT
    }
    differ = {
        name: f"installed {installed.get(name, 'nothing')}, locked {version}"
        for name, version in locked.items()
        if installed.get(name) != version
    }
    extra = sorted(set(installed) - set(locked))
    hint = "run `make install` (uv sync --locked --extra dev) to install exactly uv.lock"
    assert not differ, f"{differ}: {hint}"
    assert not extra, f"installed but not in uv.lock: {extra}: {hint}"


def test_the_lock_pins_libraries_the_telemetry_instruments_accept() -> None:
    # SQLAlchemy 2.1 made opentelemetry-instrumentation-sqlalchemy log an ERROR at every
    # start: the lock must hold versions each instrumentation declares it supports.
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for instrumentor in (HTTPXClientInstrumentor(), SQLAlchemyInstrumentor()):
        conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
        assert conflict is None, f"{type(instrumentor).__name__}: {conflict}"


def _copy_project(destination: Path) -> Path:
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy2(ROOT / name, destination / name)
    return destination


def test_make_test_stops_on_a_dependency_added_without_relocking(tmp_path: Path) -> None:
    project = _copy_project(tmp_path)
    env = {**os.environ, "UV": uv(), "UV_OFFLINE": "1"}
    fresh = subprocess.run(
        ["make", "--no-print-directory", "lock-check", f"UV={uv()}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fresh.returncode == 0, fresh.stderr

    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"pytest>=8",', '"pytest>=8",\n    "humanize>=4.9",', 1)
    )
    stale = subprocess.run(
        ["make", "--no-print-directory", "test", f"UV={uv()}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stale.returncode != 0
    assert "uv.lock does not match pyproject.toml: run `make lock`" in stale.stderr, stale.stderr
    assert not (project / ".venv").exists(), "nothing is installed from a stale lock"
