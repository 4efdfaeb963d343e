"""Group commit: concurrent publishes share one transaction, yet each keeps its own outcome.

Requests without an ``Idempotency-Key`` or caller session are committed together and
published from memory. What a caller must still see: every accepted event is committed
and published exactly once, with one publish attempt recorded; a request whose event id
was already accepted fails alone (``DuplicateEventError``), and the requests committed
in the same group as it are accepted and published; a batch stays all-or-nothing.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from contracts import AuditEvent, EventEnvelope, new_envelope
from producer import ProducerSettings, create_app, open_event_publisher
from producer.errors import DuplicateEventError, EventNotFoundError, OutboxUnavailableError
from producer.publisher import AcceptedEvent, Submission
from tests.conftest import AUDIT_QUEUE
from tests.producer.conftest import AUDIT, Caller, all_published, receive, wait_until


def lingering(settings: ProducerSettings, seconds: float) -> ProducerSettings:
    """``settings`` with a group commit linger of ``seconds``, longer than the setting
    accepts (``model_copy`` skips validation), so that a test can tell waiting from not."""
    return settings.model_copy(update={"group_commit_linger": timedelta(seconds=seconds)})


def audit(label: str) -> EventEnvelope:
    event = AuditEvent.model_validate({**AUDIT, "resource": {"type": "invoice", "id": label}})
    return new_envelope(event, source="/tests")


async def received_ids(connection_string: str, expected: int) -> list[str]:
    """Everything on the audit queue: ``expected`` messages, then make sure no more come."""
    messages = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, expected)
    extra = await asyncio.to_thread(receive, connection_string, AUDIT_QUEUE, 1, timeout=2)
    return [str(m.message_id) for m in messages + extra]


async def test_fifty_concurrent_publishes_are_committed_and_published_once(
    database_url: str, connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(connection_string, database_url=database_url)
    envelopes = [audit(f"GC-{n}") for n in range(50)]
    async with open_event_publisher(settings) as publisher:
        accepted = await asyncio.gather(*(publisher.publish(e) for e in envelopes))

        ids = [e.id for e in envelopes]
        assert [a.id for a in accepted] == ids
        assert all(a.queue == AUDIT_QUEUE and not a.replayed for a in accepted)
        # Every publish returned after its commit: all rows are readable at once.
        assert {(await publisher.get(i)).id for i in ids} == set(ids)
        assert sorted(await received_ids(connection_string, 50)) == sorted(ids)
        assert await all_published(publisher, ids)
        for event_id in ids:
            record = await publisher.get(event_id)
            # Published from memory by the process that inserted it: one attempt, no error.
            assert record.attempts == 1, record
            assert record.last_error is None
            assert record.finished_at is not None
        assert publisher.stats.accepted == 50
        assert publisher.stats.published == 50  # each sent once (not once per retry)
        assert publisher.stats.publish_failed == 0
        # Handed to the committer before it ran: one transaction for all fifty.
        assert (publisher.stats.commit_groups, publisher.stats.grouped_events) == (1, 50)
        assert (await publisher.repository.backlog()).count == 0


async def test_a_duplicate_id_fails_alone_and_its_group_is_still_published(
    database_url: str, connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(connection_string, database_url=database_url)
    earlier = audit("GC-earlier")
    twice = audit("GC-twice")  # new, but carried by two requests of the same group
    others = [audit(f"GC-{n}") for n in range(20)]
    async with open_event_publisher(settings) as publisher:
        await publisher.publish(earlier)

        # All requests are handed to the committer before it runs: one group.
        results: list[AcceptedEvent | BaseException] = await asyncio.gather(
            *(publisher.publish(e) for e in others[:10]),
            publisher.publish(earlier),
            publisher.publish(twice),
            publisher.publish(twice),
            *(publisher.publish(e) for e in others[10:]),
            return_exceptions=True,
        )

        assert isinstance(results[10], DuplicateEventError)
        twice_outcomes = results[11:13]
        assert sum(isinstance(r, DuplicateEventError) for r in twice_outcomes) == 1
        assert sum(isinstance(r, AcceptedEvent) for r in twice_outcomes) == 1
        good = results[:10] + results[13:]
        assert all(isinstance(r, AcceptedEvent) for r in good), good
        assert [r.id for r in good if isinstance(r, AcceptedEvent)] == [e.id for e in others]

        expected = [earlier.id, twice.id, *(e.id for e in others)]
        assert sorted(await received_ids(connection_string, len(expected))) == sorted(expected)
        assert await all_published(publisher, expected)
        assert {(await publisher.get(i)).attempts for i in expected} == {1}
        assert publisher.stats.accepted == len(expected)
        assert publisher.stats.published == len(expected)
        # The duplicate split the group into one transaction per request; only the
        # transactions that committed count, with the events they committed.
        assert publisher.stats.grouped_events == len(expected)
        assert publisher.stats.commit_groups == len(expected)


async def test_a_batch_with_a_duplicate_stays_all_or_nothing_in_a_group(
    database_url: str, connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = make_settings(connection_string, database_url=database_url)
    earlier = audit("GC-earlier")
    batch = [audit("GC-batch-0"), earlier, audit("GC-batch-2")]
    alone = [audit("GC-alone-0"), audit("GC-alone-1")]
    async with open_event_publisher(settings) as publisher:
        await publisher.publish(earlier)

        first, in_batch, second = await asyncio.gather(
            publisher.publish(alone[0]),
            publisher.publish_many([Submission(e) for e in batch]),
            publisher.publish(alone[1]),
            return_exceptions=True,
        )

        assert isinstance(in_batch, DuplicateEventError)
        assert isinstance(first, AcceptedEvent)
        assert isinstance(second, AcceptedEvent)
        assert [first.id, second.id] == [e.id for e in alone]
        for rejected in (batch[0], batch[2]):  # nothing of the failed batch was written
            with pytest.raises(EventNotFoundError):
                await publisher.get(rejected.id)
        expected = [earlier.id, *(e.id for e in alone)]
        assert sorted(await received_ids(connection_string, len(expected))) == sorted(expected)
        assert await all_published(publisher, expected)


def test_concurrent_http_requests_are_all_accepted_and_published_once(
    connection_string: str, make_settings: Callable[..., ProducerSettings], caller: Caller
) -> None:
    count = 40
    with TestClient(create_app(make_settings(connection_string))) as client:

        def post(n: int) -> httpx2.Response:
            body = {**AUDIT, "resource": {"type": "invoice", "id": f"HTTP-{n}"}}
            response: httpx2.Response = client.post(
                "/v1/audit-events", json=body, headers=caller.headers
            )
            return response

        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(post, range(count)))

        assert [r.status_code for r in responses] == [202] * count
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids)) == count
        messages = receive(connection_string, AUDIT_QUEUE, count)
        extra = receive(connection_string, AUDIT_QUEUE, 1, timeout=2)
        assert sorted(str(m.message_id) for m in messages + extra) == sorted(ids)

        def published() -> bool:
            return all(
                client.get(f"/v1/events/{i}", headers=caller.headers).json()["status"]
                == "published"
                for i in ids
            )

        assert wait_until(published)
        statuses = [client.get(f"/v1/events/{i}", headers=caller.headers).json() for i in ids]
        assert {s["attempts"] for s in statuses} == {1}
        assert all(s["last_error"] is None for s in statuses)
        stats = client.get("/v1/stats", headers=caller.headers).json()
        assert stats["accepted"] == stats["published"] == count
        assert stats["publish_failed"] == 0
        assert stats["grouped_events"] == count
        assert 1 <= stats["commit_groups"] <= count


async def test_a_smaller_cohort_waits_for_the_rest_of_its_group(
    connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    # A long linger, so that only the rest of the group can release the waiting requests.
    settings = lingering(make_settings(connection_string), 30)
    async with open_event_publisher(settings) as publisher:
        first = [audit(f"L-a{n}") for n in range(8)]
        await asyncio.gather(*(publisher.publish(e) for e in first))
        assert (publisher.stats.commit_groups, publisher.stats.grouped_events) == (1, 8)

        early = [asyncio.create_task(publisher.publish(audit(f"L-b{n}"))) for n in range(3)]
        done, _ = await asyncio.wait(early, timeout=0.5)
        assert not done  # three of a group of eight: they wait for the rest
        late = [asyncio.create_task(publisher.publish(audit(f"L-c{n}"))) for n in range(5)]
        accepted = await asyncio.wait_for(asyncio.gather(*early, *late), timeout=20)

        # The three and the five were committed together, in one transaction.
        assert (publisher.stats.commit_groups, publisher.stats.grouped_events) == (2, 16)
        ids = [*(e.id for e in first), *(a.id for a in accepted)]
        assert sorted(await received_ids(connection_string, 16)) == sorted(ids)
        assert await all_published(publisher, ids)


async def test_a_group_that_stays_short_commits_when_the_linger_runs_out(
    connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    settings = lingering(make_settings(connection_string), 3)
    async with open_event_publisher(settings) as publisher:
        await asyncio.gather(*(publisher.publish(audit(f"S-a{n}")) for n in range(8)))

        # Alone after a group of eight: committed once the linger ran out, not lost.
        alone = await publisher.publish(audit("S-alone"))
        assert (publisher.stats.commit_groups, publisher.stats.grouped_events) == (2, 9)
        # The committer now expects single requests: the next one does not wait the
        # linger (3 s) again.
        after = await asyncio.wait_for(publisher.publish(audit("S-after")), timeout=1.5)
        assert (publisher.stats.commit_groups, publisher.stats.grouped_events) == (3, 10)
        assert await all_published(publisher, [alone.id, after.id])


def test_the_group_commit_linger_is_a_short_duration(
    connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    assert make_settings(connection_string).group_commit_linger.total_seconds() == 0.005
    assert (
        make_settings(
            connection_string, group_commit_linger="0.005"
        ).group_commit_linger.total_seconds()
        == 0.005
    )
    with pytest.raises(ValidationError, match="group_commit_linger"):
        make_settings(connection_string, group_commit_linger=5)


async def test_a_request_still_waiting_for_its_group_at_shutdown_gets_an_answer(
    connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> None:
    # A long linger keeps the lone request waiting for a group that never fills.
    settings = lingering(make_settings(connection_string), 60)
    async with open_event_publisher(settings) as publisher:
        await asyncio.gather(*(publisher.publish(audit(f"W-a{n}")) for n in range(8)))
        waiting = asyncio.create_task(publisher.publish(audit("W-alone")))
        done, _ = await asyncio.wait([waiting], timeout=0.5)
        assert not done
    # The publisher closed: the caller is told its event was not accepted, not left hanging.
    with pytest.raises(OutboxUnavailableError, match="closed before the event was committed"):
        await asyncio.wait_for(waiting, timeout=30)
