"""The batching primitive: what each caller of ``Batcher.submit`` can rely on.

Deterministic: a flush is held open with an event while the test submits more, so which
items share a batch never depends on timing.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from common.batching import Batch, Batcher, Failed, one_by_one


class Sink:
    """Records each flushed batch; ``gate`` (when set) holds every flush until opened."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.ones: list[int] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        if not gated:
            self.gate.set()

    async def flush(self, items: list[int]) -> Sequence[int | Failed]:
        self.batches.append(list(items))
        self.entered.set()
        await self.gate.wait()
        if any(item < 0 for item in items):
            raise ValueError("a negative item")
        return [item * 10 for item in items]

    async def flush_one(self, item: int) -> int:
        self.ones.append(item)
        if item < 0:
            raise ValueError(f"bad item {item}")
        return item * 10


async def test_items_submitted_during_a_flush_form_the_next_batch() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush)
    first = asyncio.create_task(batcher.submit(1))
    await sink.entered.wait()
    later = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert batcher.pending == 3
    sink.gate.set()

    assert await first == 10
    assert [await task for task in later] == [20, 30, 40]
    assert sink.batches == [[1], [2, 3, 4]]


async def test_order_is_kept_within_and_across_batches() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush, max_size=2)
    tasks = [asyncio.create_task(batcher.submit(n)) for n in range(7)]
    await sink.entered.wait()
    sink.gate.set()

    assert await asyncio.gather(*tasks) == [n * 10 for n in range(7)]
    assert sink.batches == [[0, 1], [2, 3], [4, 5], [6]]


async def test_size_bounds_a_batch_and_an_oversized_item_goes_alone() -> None:
    sink = Sink()
    batcher: Batcher[int, int] = Batcher(sink.flush, max_size=5, size=lambda n: n)
    assert await asyncio.gather(*(batcher.submit(n) for n in (2, 3, 9, 1, 1))) == [
        20,
        30,
        90,
        10,
        10,
    ]
    assert sink.batches == [[2, 3], [9], [1, 1]]


async def test_one_bad_item_fails_alone_when_the_batch_falls_back_to_one_by_one() -> None:
    sink = Sink()
    batcher: Batcher[int, int] = Batcher(
        sink.flush, flush_one=sink.flush_one, isolate=(ValueError,)
    )
    outcomes = await asyncio.gather(
        *(batcher.submit(n) for n in (1, -2, 3)), return_exceptions=True
    )

    assert outcomes[0] == 10
    assert outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError)
    assert "bad item -2" in str(outcomes[1])
    assert sink.batches == [[1, -2, 3]]
    assert sink.ones == [1, -2, 3]


async def test_an_error_not_isolated_fails_the_whole_batch_and_the_next_batch_goes_on() -> None:
    sink = Sink()
    batcher: Batcher[int, int] = Batcher(sink.flush, flush_one=sink.flush_one, isolate=(KeyError,))
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(-1), return_exceptions=True)

    assert all(isinstance(o, ValueError) for o in outcomes)
    assert sink.ones == []
    assert await batcher.submit(2) == 20


async def test_a_flush_can_fail_single_items_through_their_outcome() -> None:
    async def flush(items: list[int]) -> Sequence[int | Failed]:
        return [Failed(LookupError(n)) if n == 2 else n for n in items]

    batcher: Batcher[int, int] = Batcher(flush)
    outcomes = await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3)), return_exceptions=True)

    assert outcomes[0] == 1
    assert outcomes[2] == 3
    assert isinstance(outcomes[1], LookupError)


async def test_a_flush_returning_the_wrong_number_of_outcomes_fails_its_callers() -> None:
    async def flush(items: list[int]) -> Sequence[int | Failed]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(flush)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(o, ValueError) for o in outcomes)


async def test_a_cancelled_caller_stops_waiting_but_its_item_is_still_flushed() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush)
    flushing = asyncio.create_task(batcher.submit(1))
    await sink.entered.wait()
    queued = asyncio.create_task(batcher.submit(2))
    other = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)

    flushing.cancel()  # its batch is being written
    queued.cancel()  # its batch is not taken yet
    with pytest.raises(asyncio.CancelledError):
        await flushing
    with pytest.raises(asyncio.CancelledError):
        await queued
    sink.gate.set()

    assert await other == 30
    await batcher.flush()
    assert sink.batches == [[1], [2, 3]]


async def test_flush_waits_for_everything_pending_and_in_flight() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush)
    tasks = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
    await sink.entered.wait()
    flushed = asyncio.create_task(batcher.flush())
    await asyncio.sleep(0)
    assert not flushed.done()
    sink.gate.set()

    await flushed
    assert all(task.done() for task in tasks)
    assert sink.batches == [[1, 2]]


async def test_aclose_flushes_what_is_pending() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush)
    first = asyncio.create_task(batcher.submit(1))
    await sink.entered.wait()
    second = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose())
    await asyncio.sleep(0)
    sink.gate.set()

    await closing
    assert (await first, await second) == (10, 20)
    assert sink.batches == [[1], [2]]


async def test_aclose_with_an_error_drops_what_is_pending() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush)
    first = asyncio.create_task(batcher.submit(1))
    await sink.entered.wait()
    second = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)

    await batcher.aclose(RuntimeError("closed"))

    with pytest.raises(asyncio.CancelledError):
        await first  # its batch was being flushed when the flusher was cancelled
    with pytest.raises(RuntimeError, match="closed"):
        await second
    assert sink.batches == [[1]]
    sink.gate.set()
    assert await batcher.submit(3) == 30  # a later submit starts a new flusher


async def test_a_writer_can_take_pending_items_and_complete_them() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush)
    first = asyncio.create_task(batcher.submit(1))
    await sink.entered.wait()
    taken_tasks = [asyncio.create_task(batcher.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)

    taken = batcher.take()
    assert taken is not None
    assert taken.items == [2, 3]
    assert taken.size == 2
    assert batcher.take() is None
    taken.resolve([7, Failed(KeyError("x"))])
    sink.gate.set()

    assert await first == 10
    assert await taken_tasks[0] == 7
    with pytest.raises(KeyError):
        await taken_tasks[1]
    assert sink.batches == [[1]]


async def test_a_batch_given_back_is_flushed_before_later_items() -> None:
    sink = Sink()
    batcher: Batcher[int, int] = Batcher(sink.flush)
    tasks = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
    await asyncio.sleep(0)
    taken = batcher.take()
    assert taken is not None
    tasks.append(asyncio.create_task(batcher.submit(3)))
    await asyncio.sleep(0)
    batcher.give_back(taken)

    assert await asyncio.gather(*tasks) == [10, 20, 30]
    assert [n for batch in sink.batches for n in batch] == [1, 2, 3]


async def test_items_stay_pending_while_the_flusher_waits_for_its_hold() -> None:
    sink = Sink()
    lock = asyncio.Lock()
    waiting = asyncio.Event()

    @asynccontextmanager
    async def hold() -> AsyncIterator[None]:
        waiting.set()
        async with lock:
            yield

    batcher: Batcher[int, int] = Batcher(sink.flush, hold=hold)
    async with lock:  # another writer holds the connection
        tasks = [asyncio.create_task(batcher.submit(n)) for n in (1, 2)]
        await waiting.wait()
        taken = batcher.take()
        assert taken is not None
        assert taken.items == [1, 2]
        taken.resolve([1, 2])
    assert await asyncio.gather(*tasks) == [1, 2]
    await batcher.flush()
    assert sink.batches == []  # the flusher got the hold and found nothing to do


async def test_a_failing_hold_fails_the_pending_items() -> None:
    @asynccontextmanager
    async def hold() -> AsyncIterator[None]:
        raise ConnectionError("no database")
        yield  # pragma: no cover

    sink = Sink()
    batcher: Batcher[int, int] = Batcher(sink.flush, hold=hold)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert sink.batches == []


async def test_linger_waits_for_a_batch_as_large_as_the_last_one() -> None:
    sink = Sink(gated=True)
    batcher: Batcher[int, int] = Batcher(sink.flush, linger=3600.0)
    first = [asyncio.create_task(batcher.submit(n)) for n in (1, 2, 3)]
    await sink.entered.wait()  # items arriving alone: no wait (the target starts at 1)
    sink.gate.set()
    await asyncio.gather(*first)
    assert sink.batches == [[1, 2, 3]]

    later = [asyncio.create_task(batcher.submit(4))]
    for _ in range(5):
        await asyncio.sleep(0)
    assert sink.batches == [[1, 2, 3]]  # waiting for two more (the linger never runs out)
    later += [asyncio.create_task(batcher.submit(n)) for n in (5, 6)]

    assert await asyncio.gather(*later) == [40, 50, 60]
    assert sink.batches == [[1, 2, 3], [4, 5, 6]]


async def test_when_the_linger_runs_out_the_smaller_batch_goes_and_sets_the_target() -> None:
    sink = Sink()
    batcher: Batcher[int, int] = Batcher(sink.flush, linger=0.001)
    await asyncio.gather(*(batcher.submit(n) for n in (1, 2, 3)))

    assert await batcher.submit(4) == 40  # flushed once the linger ran out
    assert sink.batches == [[1, 2, 3], [4]]
    assert await batcher.submit(5) == 50  # the target is 1 now: no wait


async def test_batch_resolve_rejects_a_wrong_number_of_outcomes() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    batch: Batch[int, int] = Batch([1], [future], 1)
    with pytest.raises(ValueError, match="0 outcomes for a batch of 1"):
        batch.resolve([])
    assert not future.done()


async def test_a_flush_can_fall_back_one_by_one_itself_sharing_what_it_needs() -> None:
    sink = Sink()

    async def flush(items: list[int]) -> Sequence[int | Failed]:
        shared = 100  # e.g. the claim a group commit gives every row it inserts
        try:
            return await sink.flush(items)
        except ValueError:
            return await one_by_one(items, lambda n: sink.flush_one(n + shared))

    batcher: Batcher[int, int] = Batcher(flush)
    outcomes = await asyncio.gather(
        *(batcher.submit(n) for n in (1, -200, 3)), return_exceptions=True
    )

    assert outcomes[0] == 1010
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 1030
