"""``python -m contracts`` as a real process: a bad path is one line naming the option."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _contracts(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contracts", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", ["check", "generate", "gate", "release"])
def test_a_missing_root_is_a_usage_error_naming_the_option(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing"

    result = _contracts(command, "--root", str(missing))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: Invalid value for '--root': dir '{missing}' does not exist."
    ]
    assert not missing.exists()  # release used to create it and write snapshots there


def test_a_root_without_the_contracts_doc_says_so(tmp_path: Path) -> None:
    result = _contracts("check", "--root", str(tmp_path))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --root {tmp_path}: no docs/contracts.md there (not the repository root?)"
    ]
    assert "Errno" not in result.stderr


def test_gate_against_a_directory_without_schemas_is_a_usage_error(tmp_path: Path) -> None:
    result = _contracts("gate", "--current", str(tmp_path))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: --current {tmp_path}: no jsonschema/<type>/<version>.json in it"
    ]


def test_an_unknown_option_is_one_line() -> None:
    result = _contracts("check", "--bogus")

    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: No such option: --bogus"]
