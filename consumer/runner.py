"""Wires settings to stores, handlers, the worker, the outcome recorder and the health
endpoint; runs until stopped."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from common.runtime import freeze_startup_objects
from common.servicebus import open_servicebus_client
from common.shutdown import MIN_CLOSE_TIME
from consumer import telemetry
from consumer.handlers import registry as handlers
from consumer.handlers.delivery import DeliveryLog
from consumer.handlers.email import EmailSender, SmtpConfig
from consumer.handlers.templates import Templates
from consumer.handlers.webhook import WebhookSender
from consumer.health import HealthServer
from consumer.outcome_recorder import OutcomeRecorder
from consumer.runtime.entities import QueueEntity, check_queues
from consumer.runtime.processor import QueueConfig
from consumer.runtime.routing import Router
from consumer.runtime.stats import WorkerStats
from consumer.runtime.worker import Worker
from consumer.settings import ConsumerSettings
from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from consumer.stores.deliveries import DeliveryStore
from consumer.stores.inbox import Inbox
from consumer.stores.outcomes import OutcomeStore
from contracts.registry import AUDIT_QUEUE, NOTIFICATIONS_QUEUE, event_types_on

T = TypeVar("T")
logger = logging.getLogger(__name__)

PRUNE_INTERVAL = 3600.0
"""Seconds between inbox prunes."""


@dataclass
class Stores:
    """The open databases and the stores on them."""

    databases: list[Database]
    audit: AuditStore
    deliveries: DeliveryStore
    inboxes: list[Inbox]
    outcomes: OutcomeStore
    delivery_log: DeliveryLog | None = None


@contextlib.asynccontextmanager
async def open_stores(settings: ConsumerSettings) -> AsyncIterator[Stores]:
    """Open (and migrate) the consumer's database(s); close them on exit.

    Delivery claims last ``settings.delivery_claim_lease``. With a delivery log, the log
    is caught up with the delivered rows (lines a crash kept out) before this yields.

    Raises:
        OSError: the delivery log cannot be read or written.
    """
    audit_db = Database(settings.audit_store_url)
    databases = [audit_db]
    delivery_db = audit_db
    if settings.delivery_store_url and settings.delivery_store_url != settings.audit_store_url:
        delivery_db = Database(settings.delivery_store_url)
        databases.append(delivery_db)
    try:
        for database in databases:
            await database.migrate()
        deliveries = DeliveryStore(delivery_db, lease=settings.delivery_claim_lease)
        log = None
        if settings.delivery_log_path:
            log = DeliveryLog(settings.delivery_log_path, deliveries)
            await log.catch_up()
        yield Stores(
            databases=databases,
            audit=AuditStore(audit_db),
            deliveries=deliveries,
            inboxes=[Inbox(database) for database in databases],
            outcomes=OutcomeStore(audit_db),
            delivery_log=log,
        )
    finally:
        for database in databases:
            await database.close()


def queue_configs(settings: ConsumerSettings) -> list[QueueConfig]:
    """The two sources' processing settings: each a queue, or a topic subscription
    (``CONSUMER_*_SUBSCRIPTION``), with or without sessions (``CONSUMER_*_SESSIONS``).
    Each accepts the event types registered on its queue (``contracts.registry``) and
    dead-letters others as ``WrongQueue``."""
    common = {
        "max_message_count": settings.max_message_count,
        "max_wait_time": settings.max_wait_time.total_seconds(),
        "busy_wait_time": settings.busy_wait_time.total_seconds(),
        "max_processing_time": settings.max_processing_time.total_seconds(),
        "recycle_after_idle": settings.receiver_recycle_after_idle.total_seconds(),
        "receivers": settings.receivers_per_queue,
        "max_concurrent_sessions": settings.max_concurrent_sessions,
    }
    prefetch = settings.prefetch_count
    audit, audit_setting = settings.source("audit")
    notifications, notifications_setting = settings.source("notifications")
    return [
        QueueConfig(
            name=audit,
            concurrency=settings.audit_concurrency,
            prefetch_count=_first(settings.audit_prefetch_count, prefetch),
            max_delivery_count=settings.audit_max_delivery_count,
            event_types=event_types_on(AUDIT_QUEUE),
            setting=audit_setting,
            sessions=settings.audit_sessions,
            sessions_setting="CONSUMER_AUDIT_SESSIONS",
            **common,  # type: ignore[arg-type]
        ),
        QueueConfig(
            name=notifications,
            concurrency=settings.notifications_concurrency,
            prefetch_count=_first(settings.notifications_prefetch_count, prefetch),
            max_delivery_count=settings.notifications_max_delivery_count,
            event_types=event_types_on(NOTIFICATIONS_QUEUE),
            setting=notifications_setting,
            sessions=settings.notifications_sessions,
            sessions_setting="CONSUMER_NOTIFICATIONS_SESSIONS",
            **common,  # type: ignore[arg-type]
        ),
    ]


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def build_router(
    settings: ConsumerSettings, stores: Stores, http: httpx.AsyncClient | None
) -> Router:
    """Routes of every event type registered in :mod:`consumer.handlers.registry`.

    Both delivery modes build every e-mail (rendering its template) and every webhook
    request (checking its target) the same way, with the same errors; ``log`` stops
    before the network (``http`` may then be ``None``).
    """
    dry_run = settings.delivery_mode == "log"
    if not dry_run:
        assert http is not None
        assert settings.webhook.secret is not None
    smtp, webhook = settings.smtp, settings.webhook
    email_send = EmailSender(
        SmtpConfig(
            host=smtp.host,
            port=smtp.port,
            sender=settings.email_from,
            start_tls=smtp.starttls,
            use_tls=smtp.use_tls,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            timeout=smtp.timeout.total_seconds(),
            validate_certs=smtp.validate_certs,
        ),
        Templates(settings.template_dir),
        dry_run=dry_run,
    )
    webhook_send = WebhookSender(
        http,
        webhook.secret.get_secret_value() if webhook.secret else None,
        allow_http=webhook.allow_http,
        allow_private_networks=webhook.allow_private_networks,
        dry_run=dry_run,
    )
    return handlers.build_router(
        handlers.HandlerDependencies(
            settings=settings,
            audit_store=stores.audit,
            deliveries=stores.deliveries,
            delivery_log=stores.delivery_log,
            http=http,
            send_email=email_send,
            send_webhook=webhook_send,
        )
    )


async def _prune_forever(stores: Stores, settings: ConsumerSettings) -> None:
    while True:
        cutoff = datetime.now(UTC) - settings.inbox_retention
        for inbox in stores.inboxes:
            try:
                removed = await inbox.prune(cutoff)
            except Exception as exc:
                logger.warning("pruning the inbox failed: %r", exc)
            else:
                if removed:
                    logger.info("pruned %d idempotency record(s)", removed)
        await asyncio.sleep(PRUNE_INTERVAL)


async def _measure_dlq_depth_forever(client: Any, settings: ConsumerSettings) -> None:
    queues = [settings.source("audit")[0], settings.source("notifications")[0]]
    while True:
        try:
            await telemetry.measure_dlq_depth(client, queues, settings.dlq_depth_limit)
        except Exception as exc:
            logger.warning("counting dead letters failed: %r", exc)
        await asyncio.sleep(settings.dlq_depth_interval.total_seconds())


async def run_consumer(
    settings: ConsumerSettings, stop: asyncio.Event, *, freeze_after_startup: bool = False
) -> WorkerStats:
    """Process both sources (queues or subscriptions) until ``stop`` is set.

    Shutdown, closing the Service Bus client included, ends by the worker's shutdown
    deadline (``settings.shutdown_grace_period`` after ``stop``; see
    :mod:`consumer.runtime.worker`). Once the worker has settled its messages, the last
    outcome counts are written (:mod:`consumer.outcome_recorder`), with at least
    :data:`common.shutdown.MIN_CLOSE_TIME` even past the deadline.

    Args:
        settings: The consumer's settings.
        stop: Set it to stop receiving and finish in-flight work.
        freeze_after_startup: Once stores, client and worker are set up, exempt everything
            allocated so far from full garbage collections
            (:func:`common.runtime.freeze_startup_objects`); for the worker process.

    Returns:
        The outcome counters, for the exit summary.

    Raises:
        consumer.runtime.entities.MissingQueueError: a queue or subscription (or its
            dead-letter queue) does not exist; the message names it, its setting and how
            to create it.
        consumer.runtime.entities.SessionsMismatchError: a source's RequiresSession
            disagrees with its ``CONSUMER_*_SESSIONS`` setting.
    """
    worker: Worker | None = None

    def shutdown_deadline() -> float | None:
        return worker.shutdown_deadline if worker is not None else None

    async with contextlib.AsyncExitStack() as stack:
        stores = await stack.enter_async_context(open_stores(settings))
        http = None
        if settings.delivery_mode == "live":
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=settings.webhook.timeout.total_seconds(),
                    follow_redirects=False,
                    headers={"user-agent": "servicebus-events-consumer"},
                )
            )
        router = build_router(settings, stores, http)
        client = await stack.enter_async_context(
            _exit_by(open_servicebus_client(settings), shutdown_deadline)
        )
        configs = queue_configs(settings)
        worker = Worker(
            client,
            configs,
            router,
            shutdown_grace_period=settings.shutdown_grace_period.total_seconds(),
        )
        if settings.health_port:
            checks = [(f"store {i}", db.ping) for i, db in enumerate(stores.databases)]
            health = HealthServer(worker, checks, settings.health_host, settings.health_port)
            try:
                await health.start()
            except OSError as exc:
                logger.error(
                    "health endpoint %s:%d unavailable (%s); running without it",
                    settings.health_host,
                    settings.health_port,
                    exc,
                )
            else:
                stack.push_async_callback(health.stop)
        await check_queues(
            client,
            [QueueEntity(c.name, c.setting, c.sessions, c.sessions_setting) for c in configs],
        )
        background = [asyncio.create_task(_prune_forever(stores, settings), name="inbox-prune")]
        if settings.dlq_depth_interval > timedelta(0):
            background.append(
                asyncio.create_task(_measure_dlq_depth_forever(client, settings), name="dlq-depth")
            )
        # Cancelled at the stop rather than after the worker, so that a receiver the DLQ
        # count holds closes alongside the worker's.
        watch_stop = asyncio.create_task(stop.wait(), name="stop-background")
        watch_stop.add_done_callback(lambda _: [task.cancel() for task in background])
        # Flushes through the drain too; its last flush comes once the worker has
        # settled everything, so the table gets this process's final counts.
        recorder = OutcomeRecorder(
            worker.stats,
            stores.outcomes,
            interval=settings.outcome_flush_interval.total_seconds(),
            retention=settings.outcome_retention,
        )
        if freeze_after_startup:
            freeze_startup_objects()
        recorder.start()
        try:
            await worker.run(stop)
        finally:
            watch_stop.cancel()
            for task in background:
                task.cancel()
            await asyncio.wait(background, timeout=max(worker.deadline_left(), 0.0))
            # Like the closes, the last flush gets a minimum even past the deadline.
            await recorder.close(max(worker.deadline_left(), MIN_CLOSE_TIME))
    left = worker.deadline_left()
    logger.info(
        "shutdown finished %.1f s %s its deadline (CONSUMER_SHUTDOWN_GRACE_PERIOD=%g s)",
        abs(left),
        "before" if left >= 0 else "after",
        settings.shutdown_grace_period.total_seconds(),
    )
    return worker.stats


@contextlib.asynccontextmanager
async def _exit_by(
    manager: contextlib.AbstractAsyncContextManager[T], deadline: Callable[[], float | None]
) -> AsyncIterator[T]:
    """Enter ``manager``; give its exit until ``deadline()`` (loop time; ``None``: no limit).

    The Service Bus client closes every receiver and sender it made that is still open,
    one after the other; bounding it keeps a slow close from overrunning the grace period.
    """
    async with contextlib.AsyncExitStack() as inner:
        value = await inner.enter_async_context(manager)
        try:
            yield value
        finally:
            try:
                async with asyncio.timeout_at(deadline()):
                    await inner.aclose()
            except TimeoutError:
                logger.warning("Service Bus client still closing at the shutdown deadline")
