"""The live producer answers only what its OpenAPI document says (schemathesis, every check).

Property-based: schemathesis generates valid and invalid requests for every operation of
the document, sends them to the producer over loopback (uvicorn, the emulator behind it,
an API key) and runs all its checks on each answer: no 5xx, status codes, content types,
headers and bodies as documented, valid requests accepted and invalid ones rejected, on
every operation, event bodies included. Seeded and bounded, so a run is reproducible and
short. Two things the document cannot state are handled in the open: a :func:`map_body`
hook moves generated event times into the range the models accept (``deliver_at`` within
its creation window, every time within years 0001-9999 in UTC), and 413 counts as a
rejection (a byte limit, not a schema rule).

The operations are collected from the app's document when the module is imported
(schemathesis's lazy ``from_fixture`` loader does not work with pytest 9);
:func:`test_the_served_document_is_the_one_tested` checks that ``/openapi.json`` as served
is that same document.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.hooks import HookContext

from contracts.notification import DELIVER_AT_MAX_AHEAD, DELIVER_AT_PAST_TOLERANCE
from producer import ProducerSettings, create_app
from tests.producer.conftest import Caller
from tests.producer.live_server import serve

MAX_EXAMPLES = 20
"""Examples per operation and phase: about 40 s for the whole document on 2 busy cores."""


def _document() -> dict[str, Any]:
    # Building the document needs no database and no Service Bus (no lifespan runs).
    settings = ProducerSettings(
        servicebus_connection_string="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;"
        "SharedAccessKey=v;UseDevelopmentEmulator=true",
        database_url="sqlite+aiosqlite:///:memory:",
    )
    document: dict[str, Any] = create_app(settings).openapi()
    return document


TOO_LARGE = "413"
"""A body over ``PRODUCER_MAX_REQUEST_BYTES`` (or an event over the Service Bus message size)
is refused with 413 whatever its content: a byte limit JSON Schema cannot state (the
document lists 413 for these operations), so both data checks count it as a rejection."""

_DEFAULTS = SchemathesisConfig().projects.default.checks
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            name: {"expected-statuses": [*getattr(_DEFAULTS, name).expected_statuses, TOO_LARGE]}
            for name in ("positive_data_acceptance", "negative_data_rejection")
        }
    }
)

DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)

_MARGIN = timedelta(minutes=1)
"""Room for the time between generating a body and the producer validating it."""


def _into_the_present(value: datetime, *, deliver_at: bool) -> datetime:
    """``value`` moved to where the rules JSON Schema cannot state put a valid time.

    Two rules compare with a clock or a calendar, which JSON Schema cannot do, so the
    models state them in the field descriptions instead (contracts/_types.py,
    contracts/notification.py): ``deliver_at`` lies between 5 minutes ago and 365 days
    ahead when the event is created, and every time lies within years 0001-9999 in UTC.
    """
    try:
        value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: year 0 in UTC
        value = value.replace(year=2000)
    if not deliver_at:
        return value
    now = datetime.now(UTC)
    earliest, latest = now - DELIVER_AT_PAST_TOLERANCE + _MARGIN, now + DELIVER_AT_MAX_AHEAD
    if earliest <= value <= latest - _MARGIN:
        return value
    # Keep the generated time's spread (and its offset) inside the window.
    span = (latest - earliest - 2 * _MARGIN).total_seconds()
    return (earliest + timedelta(seconds=value.timestamp() % span)).astimezone(value.tzinfo)


def _event_times_in_range(event: object) -> None:
    if not isinstance(event, dict):
        return
    for name in ("occurred_at", "deliver_at"):
        text = event.get(name)
        if not isinstance(text, str):
            continue  # absent, or a negative case's wrong type: left to be refused
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            continue  # a negative case's malformed time: left to be refused
        if parsed.tzinfo is not None:
            moved = _into_the_present(parsed, deliver_at=name == "deliver_at")
            event[name] = moved.isoformat().replace("+00:00", "Z")


@schema.hook
def map_body(context: HookContext, body: Any) -> Any:
    """Generated event times moved into the range the models accept (see above).

    Only well-formed times are moved, and only in time, so every body stays valid or
    invalid under the document exactly as it was generated, and every check still runs
    on every operation.
    """
    if isinstance(body, dict):
        events = body.get("events")
        for event in events if isinstance(events, list) else [body]:
            _event_times_in_range(event)
    return body


@pytest.fixture(scope="module")
def live_url(
    shared_connection_string: str, tmp_path_factory: pytest.TempPathFactory, caller: Caller
) -> Iterator[str]:
    """One producer for the whole run (each example is one request to it)."""
    outbox = tmp_path_factory.mktemp("contract") / "outbox.db"
    settings = ProducerSettings(
        servicebus_connection_string=shared_connection_string,
        database_url=f"sqlite+aiosqlite:///{Path(outbox)}",
        api_keys=str(caller.entry),
        servicebus_operation_timeout=10,
        shutdown_grace=2,
    )
    with serve(settings) as url:
        yield url


def test_the_served_document_is_the_one_tested(live_url: str) -> None:
    assert httpx.get(f"{live_url}/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_openapi_document(
    case: schemathesis.Case[Any], live_url: str, caller: Caller
) -> None:
    case.call_and_validate(base_url=live_url, headers=caller.headers)
