"""Starting the services under test and driving them: producer, consumer, baselines, load."""

import hashlib
import json
import math
import secrets
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.loadgen import Spec
from bench.support import Reporter, Settings, read_json, wait_process
from tools.processes import ManagedProcess, free_port

API_KEY = secrets.token_urlsafe(32)
"""The key the load generator presents (``X-API-Key``)."""
QUIET_ENV = {"TELEMETRY_EXPORTER": "none", "LOG_LEVEL": "WARNING", "ENVIRONMENT": "benchmark"}
"""Per component (with its prefix): no span export, warnings only."""
SHIPPED_ENVIRONMENT = "production"
"""``*_ENVIRONMENT`` of a deployment: anything but ``development`` (which prints summaries)."""


def telemetry_env(prefix: str, otlp_endpoint: str | None) -> dict[str, str]:
    """Telemetry and log settings of one component (``PRODUCER_`` / ``CONSUMER_``).

    ``None``: telemetry off (:data:`QUIET_ENV`). An endpoint: the shipped defaults, as a
    deployment runs them -- exporter ``auto`` picking OTLP/HTTP from the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, the default sampler and log level, environment not
    ``development`` (see :mod:`common.telemetry`).
    """
    if otlp_endpoint is None:
        return _prefixed(prefix, QUIET_ENV)
    return {
        f"{prefix}ENVIRONMENT": SHIPPED_ENVIRONMENT,
        f"{prefix}TELEMETRY_EXPORTER": "auto",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
    }


@dataclass
class Context:
    """One benchmark invocation: sizes, where files go, progress."""

    settings: Settings
    run_dir: Path
    reporter: Reporter
    counter: int = 0

    def new_dir(self, label: str) -> Path:
        """A fresh directory for one run's databases and logs."""
        self.counter += 1
        path = self.run_dir / f"{self.counter:03d}-{label}"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class Service:
    """An HTTP service under test."""

    process: ManagedProcess
    base_url: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def stop(self) -> int:
        return self.process.stop()


def _prefixed(prefix: str, values: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}{name}": value for name, value in values.items()}


def start_producer(
    workdir: Path,
    connection_string: str,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    *,
    wait: bool = True,
    otlp_endpoint: str | None = None,
) -> Service:
    """``python -m producer`` with its outbox at ``database_url``; waits for ``/healthz``.

    Telemetry is off unless ``otlp_endpoint`` is given (:func:`telemetry_env`).
    """
    port = free_port()
    env = {
        "PRODUCER_SERVICEBUS_CONNECTION_STRING": connection_string,
        "PRODUCER_PORT": str(port),
        "PRODUCER_DATABASE_URL": database_url,
        "PRODUCER_API_KEYS": "bench:" + hashlib.sha256(API_KEY.encode()).hexdigest(),
        **telemetry_env("PRODUCER_", otlp_endpoint),
        **(extra_env or {}),
    }
    process = ManagedProcess("producer", "producer", env=env, log_dir=workdir)
    service = Service(process, f"http://127.0.0.1:{port}", port, {"X-API-Key": API_KEY})
    return _serving(service, "healthz") if wait else service


def start_consumer(
    workdir: Path,
    connection_string: str,
    store_url: str,
    extra_env: dict[str, str] | None = None,
    *,
    otlp_endpoint: str | None = None,
) -> Service:
    """``python -m consumer`` (log-only deliveries); waits for ``/readyz``.

    Telemetry is off unless ``otlp_endpoint`` is given (:func:`telemetry_env`).
    """
    port = free_port()
    env = {
        "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
        "CONSUMER_AUDIT_STORE_URL": store_url,
        "CONSUMER_DELIVERY_LOG_PATH": "",
        "CONSUMER_HEALTH_HOST": "127.0.0.1",
        "CONSUMER_HEALTH_PORT": str(port),
        **telemetry_env("CONSUMER_", otlp_endpoint),
        **(extra_env or {}),
    }
    process = ManagedProcess("consumer", "consumer", env=env, log_dir=workdir)
    service = Service(process, f"http://127.0.0.1:{port}", port)
    return _serving(service, "readyz")


def start_sink(workdir: Path) -> Service:
    """:mod:`bench.otlp_sink` on a free port; waits for ``/healthz``.

    Its ``base_url`` is what ``OTEL_EXPORTER_OTLP_ENDPOINT`` takes.
    """
    port = free_port()
    process = ManagedProcess(
        "otlp-sink", "bench.otlp_sink", args=["--port", str(port)], log_dir=workdir
    )
    service = Service(process, f"http://127.0.0.1:{port}", port)
    return _serving(service, "healthz")


async def sink_requests(sink: Service) -> dict[str, int]:
    """OTLP export requests the sink received so far, per signal (``traces``, ...)."""
    data = await get_json(f"{sink.base_url}/stats")
    return {path.rsplit("/", 1)[-1]: int(v["requests"]) for path, v in data.items()}


def start_app(workdir: Path, kind: str, env: dict[str, str] | None = None) -> Service:
    """One of :mod:`bench.apps` (``bare``, ``tutorial``, ``direct``, ``celery``, ``arq``,
    ``null``); waits for ``/healthz``."""
    port = free_port()
    process = ManagedProcess(
        kind, "bench.apps", args=[kind, "--port", str(port)], env=env, log_dir=workdir
    )
    service = Service(process, f"http://127.0.0.1:{port}", port)
    return _serving(service, "healthz")


class CpuSampler:
    """Samples CPU time of processes; answers "CPU % over this wall-clock interval".

    Call :meth:`sample` often (e.g. every 0.1 s while waiting); intervals are given in Unix
    time. Percent of one core. A *group* (e.g. the PostgreSQL server) is re-listed at every
    sample, so backends that start later count too (with their CPU since birth), and
    backends that exit keep their last value.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self._fixed: dict[str, psutil.Process] = {n: psutil.Process(p) for n, p in pids.items()}
        self._groups: dict[str, Callable[[], list[psutil.Process]]] = {}
        self._seen: dict[str, dict[int, float]] = {}
        self._times: list[float] = []
        self._cpu: list[dict[str, float]] = []
        self.sample()

    def add_group(self, name: str, lister: Callable[[], list[psutil.Process]]) -> None:
        """Count the processes ``lister`` returns (at each sample) as one."""
        self._groups[name] = lister
        self._seen[name] = {}
        for row in self._cpu:
            row[name] = math.nan
        self.sample()

    @staticmethod
    def _seconds(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    def sample(self) -> None:
        row: dict[str, float] = {}
        for name, process in self._fixed.items():
            value = self._seconds(process)
            row[name] = math.nan if value is None else value
        for name, lister in self._groups.items():
            seen = self._seen[name]
            for process in lister():
                value = self._seconds(process)
                if value is not None:
                    seen[process.pid] = value
            row[name] = sum(seen.values())
        self._times.append(time.time())
        self._cpu.append(row)

    def usage(self, start: float, end: float) -> dict[str, float]:
        """CPU % of one core per process between the samples nearest ``start`` and ``end``."""
        self.sample()
        names = [*self._fixed, *self._groups]
        first = min(bisect_left(self._times, start), len(self._times) - 1)
        last = min(bisect_left(self._times, end), len(self._times) - 1)
        if last <= first:
            return {name: math.nan for name in names}
        wall = self._times[last] - self._times[first]
        return {
            name: (self._cpu[last][name] - self._cpu[first][name]) / wall * 100 for name in names
        }


def postgres_processes() -> list[psutil.Process]:
    """The local PostgreSQL server's processes (postmaster and backends)."""
    found = []
    for process in psutil.process_iter(["name"]):
        if (process.info.get("name") or "").startswith("postgres"):
            found.append(process)
    return found


async def run_load(
    ctx: Context,
    workdir: Path,
    spec: Spec,
    sampler: CpuSampler | None = None,
    label: str = "load",
) -> dict[str, Any]:
    """Run :mod:`bench.loadgen` as its own process; returns its result document."""
    spec_path = workdir / f"loadgen-{ctx.counter}-{time.time_ns()}.json"
    out_path = spec_path.with_suffix(".out.json")
    spec_path.write_text(json.dumps(asdict(spec)))
    process = ManagedProcess(
        "loadgen", "bench.loadgen", args=[str(spec_path), str(out_path)], log_dir=workdir
    )
    started = time.monotonic()
    total = spec.warmup + spec.duration

    def poll() -> None:
        if sampler is not None:
            sampler.sample()
        elapsed = time.monotonic() - started
        ctx.reporter.detail(f"{label}: {min(elapsed, total):.0f}/{total:.0f} s")

    await wait_process(process, within=total + 120, on_poll=poll)
    return read_json(out_path)


async def get_json(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url, headers=headers)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def _serving(service: Service, path: str) -> Service:
    """``service`` once ``GET /<path>`` answers 200 (60 s at most); stopped if it never does."""
    try:
        service.process.wait_http_ok(f"{service.base_url}/{path}", timeout=60)
    except BaseException:
        service.process.stop()
        raise
    return service
