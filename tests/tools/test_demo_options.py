"""``python -m tools.demo`` refuses a summary file it could not write, before starting
anything, with one readable error naming the option."""

import os
import subprocess
import sys
from pathlib import Path

from tools.processes import ROOT


def test_summary_json_in_a_missing_directory_is_refused_up_front(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "summary.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.demo",
            "--summary-json",
            str(target),
            "--run-dir",
            str(tmp_path / "run"),
        ],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "400"},  # the error box on one line
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "Invalid value for '--summary-json'" in result.stderr
    assert f"directory {target.parent} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
