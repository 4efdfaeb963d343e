"""Composition root of the producer: opens, wires and closes everything a publisher needs.

:func:`open_event_publisher` is the one place where the outbox engine, the Service Bus
client and its senders, the relay, the pruner and the :class:`EventPublisher` service are
built and connected, and where they are shut down, in order, by one deadline
(:mod:`producer.shutdown`). The service itself (:mod:`producer.publisher`) receives its
collaborators and knows nothing about start-up or shutdown order.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress

from sqlalchemy.ext.asyncio import AsyncEngine

from common.servicebus import open_servicebus_client
from producer.outbox.database import DATABASE_ERRORS, create_outbox_engine, run_migrations
from producer.outbox.pruning import Pruner
from producer.outbox.relay import PublishStats, Relay
from producer.outbox.repository import OutboxRepository
from producer.publisher import EventPublisher
from producer.settings import ProducerSettings
from producer.shutdown import ShutdownDeadline
from producer.startup import require_queues
from producer.transport import ServiceBusTransport

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_event_publisher(
    settings: ProducerSettings,
    *,
    engine: AsyncEngine | None = None,
    check_queues: bool = True,
    shutdown: ShutdownDeadline | None = None,
) -> AsyncIterator[EventPublisher]:
    """Start the outbox publisher of this process; stop it gracefully on exit.

    On entry: migrate the outbox (if ``settings.migrate_on_startup``), check that the
    queues exist (:func:`producer.startup.require_queues`; an unreachable Service Bus does
    not stop the start, the outbox keeps what is accepted), open the Service Bus client,
    start the relay loop and the pruner. On exit, by one deadline
    (:mod:`producer.shutdown`): in-flight publishes, the relay and the pruner finish or are
    cancelled, then leases are released while the senders and the client close, at once;
    whatever is unpublished stays in the outbox. Logs how long before (or after) the
    deadline it finished.

    Args:
        settings: The producer's settings.
        engine: Use this engine (e.g. the application's, to join its transactions);
            otherwise one is created from ``settings.database_url`` and disposed on exit.
        check_queues: Check the queues at start-up (up to
            ``producer.startup.QUEUE_CHECK_TIMEOUT`` seconds when Service Bus is slow).
        shutdown: The process's shutdown deadline, started at SIGTERM by the server;
            by default one of ``settings.shutdown_grace`` started when the exit begins
            (it is started then anyway if nothing started it).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable or migrating failed.
        MissingQueueError: Service Bus says a queue does not exist.
    """
    deadline = shutdown or ShutdownDeadline(settings.shutdown_grace.total_seconds())
    own_engine = engine is None
    outbox_engine = engine if engine is not None else create_outbox_engine(settings.database_url)
    stopping = False
    try:
        if settings.migrate_on_startup:
            await run_migrations(outbox_engine)
        if check_queues:
            await require_queues(settings)
        repository = OutboxRepository(outbox_engine, lease=settings.relay_lease)
        stats = PublishStats()
        async with AsyncExitStack() as servicebus:
            client = await servicebus.enter_async_context(open_servicebus_client(settings))
            transport = ServiceBusTransport(
                client,
                operation_timeout=settings.servicebus_operation_timeout.total_seconds(),
                max_batch_messages=settings.publish_batch_size,
                senders_per_queue=settings.senders_per_queue,
            )
            servicebus.push_async_callback(transport.close)  # if the start fails
            relay = Relay(
                repository,
                transport,
                instance_id=settings.instance_id,
                batch_size=settings.publish_batch_size,
                poll_interval=settings.relay_poll_interval.total_seconds(),
                backoff_initial=settings.relay_backoff_initial.total_seconds(),
                backoff_max=settings.relay_backoff_max.total_seconds(),
                max_message_bytes=settings.max_message_bytes,
                stats=stats,
            )
            pruner = Pruner(
                repository,
                retention=settings.outbox_retention,
                idempotency_retention=settings.idempotency_retention,
                interval=settings.prune_interval,
            )
            publisher = EventPublisher(settings, repository, transport, relay, stats)
            background = [
                asyncio.create_task(relay.run(), name="outbox-relay"),
                asyncio.create_task(pruner.run(), name="outbox-pruner"),
            ]
            try:
                yield publisher
            finally:
                stopping = True
                deadline.start()
                pruner.request_stop()
                await _stop(publisher, background, servicebus.pop_all(), deadline)
    finally:
        if own_engine:
            await _dispose(outbox_engine, deadline)
    if stopping:
        left = deadline.left()
        logger.info(
            "shutdown finished %.1f s %s its deadline (PRODUCER_SHUTDOWN_GRACE=%g s)",
            abs(left),
            "before" if left >= 0 else "after",
            deadline.grace,
        )


async def _stop(
    publisher: EventPublisher,
    background: list["asyncio.Task[None]"],
    servicebus: AsyncExitStack,
    deadline: ShutdownDeadline,
) -> None:
    """Shut the publisher down by ``deadline`` (steps 1 and 2 of :mod:`producer.shutdown`).

    Publishes, the relay loops and the pruner get until the reserve; then, at once, the
    database side (cancelled publishes release their rows, waiting published marks are
    written, this process's leases are released) and the Service Bus side (every sender,
    then the client, closes), both given up at the deadline.
    """
    await publisher.stop_accepting()
    work = {*publisher.in_flight, *background}
    _, pending = await asyncio.wait(work, timeout=deadline.work_left())
    for task in pending:
        task.cancel()
    publishes = len(pending - set(background))
    if publishes:
        logger.warning("left %d in-flight publishes to the outbox", publishes)

    async def database() -> None:
        if pending:
            await asyncio.wait(pending)  # each releases its rows for the relay
        await publisher.relay.marks.wait_flushed()
        with suppress(*DATABASE_ERRORS):
            released = await publisher.repository.release_instance(publisher.settings.instance_id)
            if released:
                logger.info("released %d unpublished outbox rows for other replicas", released)

    async def close_servicebus() -> None:
        await publisher.transport.close()
        try:
            await servicebus.aclose()
        except Exception as exc:  # the process is ending: say so, do not fail the exit
            logger.warning("closing the Service Bus client failed: %r", exc)

    try:
        async with asyncio.timeout(deadline.close_left()):
            await asyncio.gather(database(), close_servicebus())
    except TimeoutError:
        logger.warning(
            "shutdown deadline reached while releasing leases or closing the Service Bus "
            "client: left to end with the process (unreleased rows wait out their lease)"
        )
    for task in background:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", task.get_name(), exc_info=task.exception())


async def _dispose(engine: AsyncEngine, deadline: ShutdownDeadline) -> None:
    """Dispose of the outbox engine, waiting no longer than the shutdown deadline."""
    try:
        async with asyncio.timeout(deadline.close_left()):
            await engine.dispose()
    except TimeoutError:
        logger.warning("outbox database connections still closing at the shutdown deadline")
