"""Fault injection with real processes and signals: no accepted event is lost or duplicated.

Each test prints ``accepted / published / lost / duplicated`` (run with ``pytest -s``) and
asserts ``lost == 0`` and ``duplicated == 0`` as seen by a receiver on the queue (after
Service Bus duplicate detection).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.producer.conftest import Caller
from tests.producer.faults import Emulator, Load, Producer, Tally, Watcher, poll

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"


def drained(producers: list[Producer]) -> bool:
    """Every replica reports an empty outbox backlog."""
    return all(p.readiness()["checks"]["outbox"]["backlog"] == 0 for p in producers)


def finish(load: Load, watcher: Watcher, producers: list[Producer], scenario: str) -> Tally:
    """Stop the load, wait for everything accepted to arrive, then count."""
    load.stop()
    poll(lambda: watcher.has_all(load.accepted), timeout=90)
    poll(lambda: drained(producers), timeout=30)
    watcher.settle()
    watcher.stop()
    tally = Tally.of(load, watcher)
    tally.report(scenario, failed_requests=dict(load.failures))
    return tally


def outage(
    emulator: Emulator, load: Load, watcher: Watcher, producers: list[Producer]
) -> dict[str, Any]:
    """Stop the emulator for ~10 s under load; returns the worst readiness seen meanwhile.

    The emulator keeps messages in memory only, so the queue is drained first: pause the
    load, wait until everything accepted so far was received, stop, resume the load.
    """
    load.pause()
    assert poll(lambda: watcher.has_all(load.accepted) and drained(producers), timeout=60)
    emulator.stop()
    before = load.count()
    load.resume()
    worst: dict[str, Any] = {"backlog": 0}

    def observe() -> bool:
        for producer in producers:
            body = producer.readiness()
            backlog = body["checks"]["outbox"]["backlog"]
            if body["checks"]["servicebus"]["reachable"] is False and backlog > worst["backlog"]:
                worst.update(backlog=backlog, http_status=body["http_status"])
        return False

    poll(observe, timeout=10, every=0.5)  # the outage lasts as long as this observation
    accepted_while_down = load.count() - before
    emulator.start()
    worst["accepted_while_down"] = accepted_while_down
    return worst


@dataclass
class Run:
    """Replicas under load, with a receiver counting what reaches the queue."""

    replicas: list[Producer]
    load: Load
    watcher: Watcher
    exit_codes: list[int] = field(default_factory=list)
    """The replicas' exit codes, filled in when :func:`under_load` ends."""


@contextmanager
def under_load(
    tmp_path: Path, emulator: Emulator, caller: Caller, database_url: str, names: list[str]
) -> Iterator[Run]:
    """Start one producer per name, a watcher on the queue and the load; stop all after."""
    replicas = [
        Producer(
            name,
            tmp_path,
            connection_string=emulator.connection_string,
            database_url=database_url,
            callers=[caller],
        )
        for name in names
    ]
    for replica in replicas:
        replica.start()
    run = Run(replicas, Load([r.base_url for r in replicas], caller), Watcher(emulator))
    try:
        run.load.start()
        yield run
    finally:
        run.load.stop()
        run.watcher.stop()
        run.exit_codes.extend(replica.stop() for replica in replicas)


def test_kill_9_under_load_loses_nothing(
    tmp_path: Path, emulator: Emulator, caller: Caller
) -> None:
    with under_load(tmp_path, emulator, caller, sqlite_url(tmp_path), ["producer"]) as run:
        [producer], load, watcher = run.replicas, run.load, run.watcher
        load.wait_for(120)
        producer.kill()
        killed_at = load.count()
        unpublished_at_kill = len(set(load.accepted) - watcher.received())
        producer.start()
        load.wait_for(killed_at + 100)

        tally = finish(load, watcher, [producer], "kill -9")
        print(f"[kill -9] accepted but not yet received when killed: {unpublished_at_kill}")

    assert tally.accepted >= 220
    assert tally.lost == 0
    assert tally.duplicated == 0


def test_service_bus_outage_under_load_loses_nothing(
    tmp_path: Path, emulator: Emulator, caller: Caller
) -> None:
    with under_load(tmp_path, emulator, caller, sqlite_url(tmp_path), ["producer"]) as run:
        load, watcher = run.load, run.watcher
        load.wait_for(100)
        seen = outage(emulator, load, watcher, run.replicas)
        load.wait_for(load.count() + 100)

        tally = finish(load, watcher, run.replicas, "Service Bus outage")
        print(f"[Service Bus outage] while down: {seen}", flush=True)

    assert run.exit_codes == [0]
    assert seen["accepted_while_down"] > 0
    assert seen["backlog"] > 0  # readiness reported the backlog ...
    assert seen["http_status"] == 503  # ... and that Service Bus was unreachable
    assert not load.failures, load.failures  # every request during the outage got 202
    assert tally.lost == 0
    assert tally.duplicated == 0


def test_two_replicas_on_postgresql_survive_kill_9_and_an_outage(
    tmp_path: Path, emulator: Emulator, caller: Caller, postgres_url: str
) -> None:
    names = ["replica-a", "replica-b"]
    with under_load(tmp_path, emulator, caller, postgres_url, names) as run:
        replicas, load, watcher = run.replicas, run.load, run.watcher
        load.wait_for(120)
        replicas[0].kill()
        killed_at = load.count()
        unpublished_at_kill = len(set(load.accepted) - watcher.received())
        replicas[0].start()
        load.wait_for(killed_at + 80)
        seen = outage(emulator, load, watcher, replicas)
        load.wait_for(load.count() + 80)

        tally = finish(load, watcher, replicas, "PostgreSQL, 2 replicas")
        stats = [r.get("/v1/stats", caller).json() for r in replicas]
        print(
            f"[PostgreSQL, 2 replicas] accepted but not yet received when A was killed: "
            f"{unpublished_at_kill}; while Service Bus was down: {seen}; "
            f"per-replica stats since their last start: {stats}"
        )

    assert seen["accepted_while_down"] > 0
    assert seen["backlog"] > 0
    assert tally.lost == 0
    assert tally.duplicated == 0
