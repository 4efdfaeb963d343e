"""The flow page's consumer outcomes: from the consumer's database when the console has
``CONSOLE_AUDIT_STORE_URL`` (as in Azure, where the consumers have no ingress and several
replicas), from one consumer's ``/status`` when that is all it has."""

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from console.app import create_app
from console.settings import ConsoleSettings
from consumer.health import HealthServer
from consumer.outcome_recorder import OutcomeRecorder
from consumer.runtime.stats import WorkerStats
from consumer.runtime.worker import Worker
from consumer.stores.database import Database
from consumer.stores.outcomes import OutcomeStore, minute_of
from tests.conftest import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.console.conftest import sign_in


def audit_row(page: str) -> str:
    found = re.search(rf"<tr><td>{AUDIT_QUEUE}</td>.*?</tr>", page, re.DOTALL)
    assert found is not None, page
    return found.group(0)


def cell(row: str, css: str) -> str:
    found = re.search(rf'<td class="{css}">(.*?)</td>', row, re.DOTALL)
    assert found is not None, row
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


async def two_replicas_record(store_url: str) -> None:
    """What two consumer replicas' recorders write, and a minute older than the window."""
    database = Database(store_url)
    try:
        store = OutcomeStore(database)
        for completed, retried, dead in ((3, 1, {"InvalidJson": 1}), (2, 0, {"WrongQueue": 2})):
            stats = WorkerStats()
            audit = stats.queue(AUDIT_QUEUE)
            audit.completed, audit.immediate_retries = completed, retried
            audit.dead_lettered.update(dead)
            stats.queue(NOTIFICATIONS_QUEUE).completed = 1
            recorder = OutcomeRecorder(stats, store, interval=10, retention=timedelta(days=7))
            assert await recorder.flush()
        old = minute_of(datetime.now(UTC) - timedelta(hours=2))
        await store.add(old, {(AUDIT_QUEUE, "completed", ""): 100})
    finally:
        await database.close()


def test_outcomes_come_from_the_store_summed_over_replicas_without_status_url(
    settings: ConsoleSettings, keys: dict[str, tuple[str, str]]
) -> None:
    assert settings.consumer_status_url is None
    assert settings.audit_store_url is not None
    asyncio.run(two_replicas_record(settings.audit_store_url))

    with TestClient(create_app(settings), follow_redirects=False) as client:
        sign_in(client, keys["reader"][0])
        page = client.get("/flow").text

    row = audit_row(page)
    assert cell(row, "outcome-completed") == "5"  # 3 + 2; the minute 2 h ago is not shown
    assert cell(row, "outcome-dead-lettered") == "3 (InvalidJson 1, WrongQueue 2)"
    assert cell(row, "outcome-retried") == "1"
    assert f"{AUDIT_QUEUE}: consumer outcomes per minute" in page
    assert f"{NOTIFICATIONS_QUEUE}: consumer outcomes per minute" in page
    assert "every consumer replica summed" in page
    assert "last 15 min" in page  # CONSOLE_HISTORY's default
    assert 'class="problem"' not in page


@contextmanager
def consumer_status() -> Iterator[tuple[str, WorkerStats]]:
    """A consumer's real ``/status`` (its health server, for a worker with no queues),
    served from its own event loop; yields the URL and the counters it reports."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Worker, HealthServer]:
        worker = Worker(None, [], lambda envelope: None)
        server = HealthServer(worker, [], "127.0.0.1", 0)
        await server.start()
        return worker, server

    worker, server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{server.port}/status", worker.stats
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_without_the_store_outcomes_come_from_status_per_interval(
    settings: ConsoleSettings, keys: dict[str, tuple[str, str]]
) -> None:
    with consumer_status() as (url, stats):
        audit = stats.queue(AUDIT_QUEUE)
        audit.completed = 2
        only_status = settings.model_copy(
            update={"audit_store_url": None, "consumer_status_url": url}
        )
        with TestClient(create_app(only_status), follow_redirects=False) as client:
            sign_in(client, keys["reader"][0])
            client.get("/flow")  # the first sample: totals since the consumer started
            audit.completed, audit.retries_scheduled = 5, 1
            audit.dead_lettered["InvalidJson"] += 1
            sampler = client.app.state.services.sampler  # type: ignore[attr-defined]
            client.portal.call(sampler.sample)  # type: ignore[union-attr]
            page = client.get("/flow").text

    row = audit_row(page)
    # Three more completions between the samples, one of them the original of the
    # delayed retry: counted once, as a retry.
    assert cell(row, "outcome-completed") == "2"
    assert cell(row, "outcome-dead-lettered") == "1"
    assert cell(row, "outcome-retried") == "1"
    assert f"{AUDIT_QUEUE}: consumer outcomes per 60 s" in page
    assert "from one consumer" in page
