"""Start and stop the system's processes (emulator, producer, consumer) on loopback.

Used by ``make run``, the end-to-end tests and the benchmarks.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A ``python -m <module>`` child whose stdout/stderr go to ``<log_dir>/<name>.log``.

    Args:
        name: Label for logs and errors.
        module: Module to run with ``python -m``.
        args: Extra command-line arguments.
        env: Variables added to this process's environment.
        log_dir: Where the log file goes.
        capture_stdout: Keep stdout as a pipe (to read a first line such as the emulator's
            connection string) instead of sending it to the log.
    """

    def __init__(
        self,
        name: str,
        module: str,
        *,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path,
        capture_stdout: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *(args or [])],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE if capture_stdout else self._log,
            stderr=self._log,
        )

    def read_line(self, timeout: float = 15.0) -> str:
        """First line of stdout (requires ``capture_stdout``).

        Raises:
            RuntimeError: the process exited or printed nothing within ``timeout`` seconds.
        """
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        os.set_blocking(self.process.stdout.fileno(), False)
        buffer = b""
        while time.monotonic() < deadline:
            chunk = self.process.stdout.read()
            if chunk:
                buffer += chunk
                if b"\n" in buffer:
                    return buffer.split(b"\n", 1)[0].decode().strip()
            elif self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} printed no line; see {self.log_path}")

    def wait_http_ok(self, url: str, timeout: float = 30.0) -> None:
        """Poll ``url`` until it answers 200.

        Raises:
            RuntimeError: the process exited or ``timeout`` seconds passed.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url}; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds (then SIGKILL); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def emulator_config_path() -> Path:
    """The project's queue configuration, shared by the emulator, the apps and infra/."""
    return ROOT / "config" / "servicebus.json"
