"""Console fixtures: an emulator, migrated outbox and consumer databases, console keys,
and a TestClient signed in (or not) through the real sign-in form."""

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from console.apikeys import new_console_key
from console.app import create_app
from console.settings import ConsoleSettings
from consumer.stores.database import Database
from emulator.testing import run_emulator
from producer.outbox import create_outbox_engine, run_migrations
from tests.conftest import queues_config

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = _CSRF.search(html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def migrate(outbox_url: str, store_url: str) -> None:
    """Create the producer's and the consumer's tables, as their processes do at start-up."""
    engine = create_outbox_engine(outbox_url)
    try:
        await run_migrations(engine)
    finally:
        await engine.dispose()
    database = Database(store_url)
    try:
        await database.migrate()
    finally:
        await database.close()


@pytest.fixture
def keys() -> dict[str, tuple[str, str]]:
    """role -> (key, CONSOLE_API_KEYS entry)."""
    made = {}
    for name, role in (("ops", "operator"), ("viewer", "reader")):
        key, entry = new_console_key(name, role)  # type: ignore[arg-type]
        made[role] = (key, str(entry))
    return made


@pytest.fixture
def settings(tmp_path: Path, keys: dict[str, tuple[str, str]]) -> Iterator[ConsoleSettings]:
    outbox_url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    store_url = f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}"
    asyncio.run(migrate(outbox_url, store_url))
    with run_emulator(queues_config()) as emulator:
        yield ConsoleSettings(
            servicebus_connection_string=emulator.connection_string,
            outbox_database_url=outbox_url,
            audit_store_url=store_url,
            api_keys=",".join(entry for _, entry in keys.values()),
            sample_interval=60,
            telemetry_exporter="none",
        )


@pytest.fixture
def client(settings: ConsoleSettings) -> Iterator[TestClient]:
    """A client of the console (lifespan entered), nobody signed in."""
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, key: str) -> None:
    """Sign in through the form, as a browser does."""
    page = client.get("/login")
    answer = client.post("/login", data={"api_key": key, "csrf_token": csrf_from(page.text)})
    assert answer.status_code == 303, answer.text
