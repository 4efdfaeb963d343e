"""``python -m console new-api-key`` as a real process: a key, its entry, or one line."""

import subprocess
import sys

from console.apikeys import match_console_key, parse_console_api_keys
from tools.processes import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_new_api_key_prints_a_key_and_the_entry_that_accepts_it() -> None:
    result = _run("new-api-key", "ops", "--role", "operator")

    assert result.returncode == 0, result.stderr
    key_line, entry_line = result.stdout.splitlines()
    assert key_line.startswith("key (give to ops): ")
    assert entry_line.startswith("CONSOLE_API_KEYS entry: ops:")
    key = key_line.removeprefix("key (give to ops): ")
    [configured] = parse_console_api_keys([entry_line.removeprefix("CONSOLE_API_KEYS entry: ")])
    assert match_console_key(key, [configured]) == configured
    assert configured.role == "operator"


def test_new_api_key_refuses_a_bad_name_in_one_line() -> None:
    result = _run("new-api-key", "no spaces")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "console: NAME must be letters, digits, '.', '_' or '-' (at most 64)\n"
    )
