"""Natural batching: callers submit one item each and wait for its own outcome.

Items submitted while a batch is being flushed form the next batch, so under load N
callers cost one write (one transaction, one fsync, one ``UPDATE``) instead of N, and an
idle batcher adds no delay: the same group-commit idea as PostgreSQL's WAL
(https://www.postgresql.org/docs/current/wal-configuration.html) and Kafka's producer
batches (https://kafka.apache.org/documentation/#producerconfigs_linger.ms).

Hand-written on purpose: the asyncio batching libraries on PyPI (flushq, aiobatcher and
the like) hand a batch to a sink and report one result for it, while the callers here need
each item's own result or error, a fall-back to one item at a time so one bad item fails
alone, a way for another writer to take the waiting items into its own transaction, and
items whose caller gave up still written.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from common.futures import fail, resolve

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Failed:
    """One item's outcome when it failed alone (the other items keep theirs)."""

    error: Exception


@dataclass(slots=True)
class Batch(Generic[T, R]):
    """Items taken together, in submission order, and the futures of their callers.

    Whoever takes a batch (the batcher's flusher, or a writer through
    :meth:`Batcher.take`) must complete it: :meth:`resolve`, :meth:`fail`, or hand it
    back with :meth:`Batcher.give_back`.
    """

    items: list[T] = field(default_factory=list)
    futures: list["asyncio.Future[R]"] = field(default_factory=list)
    size: int = 0
    """Sum of the items' sizes (see ``Batcher(size=...)``)."""

    def resolve(self, outcomes: Sequence["R | Failed"]) -> None:
        """Give each caller its outcome, in item order (a :class:`Failed` raises its error).

        Raises:
            ValueError: ``outcomes`` does not have one entry per item (nothing is set).
        """
        if len(outcomes) != len(self.futures):
            raise ValueError(f"{len(outcomes)} outcomes for a batch of {len(self.futures)}")
        for future, outcome in zip(self.futures, outcomes, strict=True):
            if isinstance(outcome, Failed):
                fail(future, outcome.error)
            else:
                resolve(future, outcome)

    def fail(self, exc: BaseException) -> None:
        """Every caller whose future is not done yet gets ``exc``."""
        for future in self.futures:
            fail(future, exc)


Flush = Callable[[list[T]], Awaitable[Sequence[R | Failed]]]
"""Writes a batch's items (in order) and returns one outcome per item."""


async def one_by_one(
    items: Sequence[T], write_one: Callable[[T], Awaitable[R]]
) -> list[R | Failed]:
    """Write each item alone, in order: the fall-back of a batch that failed as a whole.

    For a ``flush`` that must share something between its batch attempt and the items'
    own attempts (a claim, a connection); otherwise pass ``flush_one`` to :class:`Batcher`.

    Returns:
        One outcome per item: its result, or :class:`Failed` with what it raised.
        Cancellation (a ``BaseException``) is not caught.
    """
    outcomes: list[R | Failed] = []
    for item in items:
        try:
            outcomes.append(await write_one(item))
        except Exception as exc:
            outcomes.append(Failed(exc))
    return outcomes


def _one(_: object) -> int:
    return 1


@asynccontextmanager
async def _no_hold() -> AsyncIterator[None]:
    yield


class Batcher(Generic[T, R]):
    """Collects concurrently submitted items and flushes them as batches, one at a time.

    One flusher task runs while items are pending and ends when none are left. Batches
    are taken and flushed in submission order, so the order of items is kept within and
    across batches. A caller cancelled while it waits stops waiting, but its item stays in
    its batch and is flushed all the same (the wait is shielded): a batch is never cut
    short, and what was submitted is written unless the flush fails.

    Args:
        flush: Writes a batch (``list`` of items, in order); returns one outcome per item,
            a result or :class:`Failed`. An exception it raises fails the whole batch,
            unless it is one of ``isolate`` and ``flush_one`` is given.
        flush_one: Writes one item alone. When ``flush`` raises one of ``isolate``, each
            item of the batch is written with it in turn, so only the items that fail
            alone fail (per-item failure isolation).
        isolate: Exceptions from ``flush`` that mean "some item is bad": fall back to
            ``flush_one``. Others fail every item of the batch with that exception.
        max_size: Largest batch, in ``size`` units (``None``: no limit). An item larger
            than this goes alone.
        size: An item's size (default 1 per item: ``max_size`` counts items).
        linger: Seconds the flusher may wait for more items before a batch when fewer
            are pending than the largest batch reached so far (0: never waits). When the
            wait runs out, that smaller size becomes the target, so a load that shrinks
            stops waiting; items arriving alone never wait.
        yield_turns: Extra event-loop turns the flusher lets pass when it starts after
            being idle, so callers ready in those turns join the first batch.
        hold: Entered before each batch is taken and left after it is flushed (a
            connection, a lock): while the flusher waits for it, the items stay pending,
            so :meth:`take` can still hand them to another writer.
        name: The flusher task's name.
    """

    def __init__(
        self,
        flush: Flush[T, R],
        *,
        flush_one: Callable[[T], Awaitable[R]] | None = None,
        isolate: tuple[type[Exception], ...] = (Exception,),
        max_size: int | None = None,
        size: Callable[[T], int] = _one,
        linger: float = 0.0,
        yield_turns: int = 0,
        hold: Callable[[], AbstractAsyncContextManager[object]] = _no_hold,
        name: str = "batcher",
    ) -> None:
        self._flush = flush
        self._flush_one = flush_one
        self._isolate = isolate
        self._max_size = max_size
        self._size = size
        self._linger = linger
        self._yield_turns = yield_turns
        self._hold = hold
        self._name = name
        self._pending: deque[tuple[T, asyncio.Future[R], int]] = deque()
        self._pending_size = 0
        self._target = 1
        """Size a batch waits for (at most ``linger``): the largest reached lately."""
        self._arrived: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Items submitted and not yet taken into a batch."""
        return len(self._pending)

    async def submit(self, item: T) -> R:
        """Add ``item`` to the next batch; return its outcome once that batch is flushed.

        Raises:
            Exception: what flushing the item raised (its :class:`Failed` error, or the
                error that failed its whole batch).
            asyncio.CancelledError: this caller was cancelled (the item is still
                flushed), or the flusher was cancelled while flushing the item.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        size = self._size(item)
        self._pending.append((item, future, size))
        self._pending_size += size
        if self._arrived is not None:
            self._arrived.set()
        self._ensure_flusher()
        return await asyncio.shield(future)

    def take(self) -> Batch[T, R] | None:
        """Hand the pending items (up to ``max_size``) to a writer, or ``None`` if none.

        The writer records them in its own transaction and must complete the batch
        (:meth:`Batch.resolve` / :meth:`Batch.fail`) or :meth:`give_back` it.
        """
        if not self._pending:
            return None
        batch: Batch[T, R] = Batch()
        while self._pending and (
            not batch.items
            or self._max_size is None
            or batch.size + self._pending[0][2] <= self._max_size
        ):
            item, future, size = self._pending.popleft()
            batch.items.append(item)
            batch.futures.append(future)
            batch.size += size
        self._pending_size -= batch.size
        return batch

    def give_back(self, batch: Batch[T, R]) -> None:
        """Put a taken batch back in front of the pending items; the flusher writes it."""
        for item, future in zip(reversed(batch.items), reversed(batch.futures), strict=True):
            size = self._size(item)
            self._pending.appendleft((item, future, size))
            self._pending_size += size
        self._ensure_flusher()

    async def flush(self) -> None:
        """Return once nothing is pending or being flushed (items given back included).

        A batch that fails still counts as flushed: its callers got the error.
        """
        while self._pending or (self._flusher is not None and not self._flusher.done()):
            self._ensure_flusher()
            assert self._flusher is not None
            await asyncio.wait({self._flusher})

    async def aclose(self, error: BaseException | None = None) -> None:
        """Shut down: flush what is pending, or, given ``error``, drop it.

        With ``error``, the flusher is cancelled (the callers of the batch being flushed
        get ``CancelledError``) and every pending caller gets ``error``: for callers told
        "nothing of yours was written". A later :meth:`submit` starts a new flusher.
        """
        if error is None:
            await self.flush()
            return
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait({self._flusher})
        while self._pending:
            _, future, size = self._pending.popleft()
            self._pending_size -= size
            fail(future, error)

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        for _ in range(self._yield_turns):
            await asyncio.sleep(0)
        while self._pending:
            if self._linger:
                await self._wait_for_target()
            batch: Batch[T, R] | None = None
            try:
                async with self._hold():
                    batch = self.take()
                    if batch is not None:
                        await self._write(batch)
            except Exception as exc:
                # The flush failed as a whole, or the hold did (then nothing was taken:
                # fail what is pending, or the loop would try again at once).
                (batch or self.take() or Batch()).fail(exc)
            except BaseException as exc:
                # Cancelled: the batch being flushed fails; pending items stay for
                # aclose(), flush() or the next submit() to deal with.
                if batch is not None:
                    batch.fail(exc)
                raise

    async def _wait_for_target(self) -> None:
        """Wait up to ``linger`` until ``_target`` is pending; then adjust the target."""
        if self._arrived is None:
            self._arrived = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + self._linger
        ran_out = False
        while self._pending_size < self._target:
            self._arrived.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._arrived.wait()
            except TimeoutError:
                ran_out = True
                break
        reached = self._pending_size
        if self._max_size is not None:
            reached = min(reached, self._max_size)
        self._target = max(1, reached if ran_out else max(self._target, reached))

    async def _write(self, batch: Batch[T, R]) -> None:
        try:
            outcomes = await self._flush(batch.items)
        except self._isolate:
            if self._flush_one is None:
                raise
            for item, future in zip(batch.items, batch.futures, strict=True):
                try:
                    result = await self._flush_one(item)
                except Exception as exc:
                    fail(future, exc)
                else:
                    resolve(future, result)
            return
        batch.resolve(outcomes)
