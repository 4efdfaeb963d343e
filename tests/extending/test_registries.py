"""The two registries behind ``docs/extending.md``: what they accept and how they dispatch."""

from collections.abc import Iterator
from typing import Final, Literal

import pytest

from consumer.retry import RetryPolicy
from consumer.runtime.routing import Route, by_event_type
from contracts import AUDIT_EVENT_TYPE, ContractModel, Envelope, EventSpec, new_envelope
from contracts import registry as contracts
from contracts.registry import AUDIT_QUEUE, NOTIFICATIONS_QUEUE
from tests.consumer.conftest import audit_envelope

PING: Final = "io.servicebus-events.example.ping"


class Ping(ContractModel):
    """A ping."""

    n: int


class PingEnvelope(Envelope):
    """A :class:`Ping` in its envelope."""

    type: Literal["io.servicebus-events.example.ping"] = PING
    schemaversion: Literal["1"] = "1"
    data: Ping


SPEC = EventSpec(PING, "1", PingEnvelope, NOTIFICATIONS_QUEUE, "Ping")


@pytest.fixture
def ping() -> Iterator[EventSpec]:
    contracts.register(SPEC)
    yield SPEC
    contracts.unregister(SPEC)


def test_a_registered_type_is_written_read_and_placed_on_its_queue(ping: EventSpec) -> None:
    envelope = new_envelope(Ping(n=3), source="/tests")

    assert isinstance(envelope, PingEnvelope)
    assert contracts.lookup(PING, "1") is ping
    assert contracts.queue_of(PING) == NOTIFICATIONS_QUEUE
    assert PING in contracts.event_types_on(NOTIFICATIONS_QUEUE)
    assert PING not in contracts.event_types_on(AUDIT_QUEUE)


def test_unregistering_removes_every_trace(ping: EventSpec) -> None:
    contracts.unregister(ping)
    try:
        assert PING not in contracts.event_types()
        assert PING not in contracts.event_types_on(NOTIFICATIONS_QUEUE)
        with pytest.raises(KeyError):
            new_envelope(Ping(n=1), source="/tests")
    finally:
        contracts.register(ping)  # for the fixture's teardown


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (EventSpec(AUDIT_EVENT_TYPE, "1", PingEnvelope, AUDIT_QUEUE, "x"), "already registered"),
        (EventSpec(PING, "v1", PingEnvelope, AUDIT_QUEUE, "x"), "positive integer"),
        (EventSpec(PING, "2", PingEnvelope, AUDIT_QUEUE, "x"), "must default type"),
        (EventSpec(PING, "1", Envelope, AUDIT_QUEUE, "x"), "data is not a model"),
    ],
)
def test_a_wrong_entry_is_refused(spec: EventSpec, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        contracts.register(spec)
    assert PING not in contracts.event_types()


def test_every_version_of_a_type_travels_on_one_queue(ping: EventSpec) -> None:
    class PingV2(PingEnvelope):
        schemaversion: Literal["2"] = "2"  # type: ignore[assignment]

    with pytest.raises(ValueError, match="must travel on queue"):
        contracts.register(EventSpec(PING, "2", PingV2, AUDIT_QUEUE, "Ping"))


async def _handled(_: object) -> None:
    return None


def test_routes_are_found_by_type_then_version() -> None:
    policy = RetryPolicy()
    any_version = Route("any", _handled, policy)
    version_2 = Route("v2", _handled, policy)
    route = by_event_type(
        {
            (AUDIT_EVENT_TYPE, None): lambda _: any_version,
            (AUDIT_EVENT_TYPE, "2"): lambda _: version_2,
        }
    )
    envelope = audit_envelope()

    assert route(envelope) is any_version
    assert route(envelope.model_copy(update={"schemaversion": "2"})) is version_2
    assert route(envelope.model_copy(update={"type": PING})) is None
