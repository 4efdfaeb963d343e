"""Wires settings to stores, handlers, the worker and the health endpoint; runs until stopped."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from common.runtime import freeze_startup_objects
from common.servicebus import open_servicebus_client
from consumer import telemetry
from consumer.handlers.audit import AuditHandler
from consumer.handlers.delivery import DeliveryLog, NotificationHandler, Sender, log_only
from consumer.handlers.email import EmailSender, SmtpConfig
from consumer.handlers.templates import Templates
from consumer.handlers.webhook import WebhookSender
from consumer.health import HealthServer
from consumer.runtime.processor import QueueConfig
from consumer.runtime.routing import Route, Router
from consumer.runtime.stats import WorkerStats
from consumer.runtime.worker import Worker
from consumer.settings import ConsumerSettings
from consumer.stores.audit import AuditStore
from consumer.stores.database import Database
from consumer.stores.deliveries import DeliveryStore
from consumer.stores.inbox import Inbox
from contracts import (
    AUDIT_EVENT_TYPE,
    NOTIFICATION_EVENT_TYPE,
    AuditEnvelope,
    EventEnvelope,
    NotificationChannel,
    NotificationEnvelope,
)

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


@contextlib.asynccontextmanager
async def open_stores(settings: ConsumerSettings) -> AsyncIterator[Stores]:
    """Open (and migrate) the consumer's database(s); close them on exit."""
    audit_db = Database(settings.audit_store_url)
    databases = [audit_db]
    delivery_db = audit_db
    if settings.delivery_store_url and settings.delivery_store_url != settings.audit_store_url:
        delivery_db = Database(settings.delivery_store_url)
        databases.append(delivery_db)
    try:
        for database in databases:
            await database.migrate()
        lease = max(settings.max_processing_time, 60.0)
        yield Stores(
            databases=databases,
            audit=AuditStore(audit_db),
            deliveries=DeliveryStore(delivery_db, lease=timedelta(seconds=lease)),
            inboxes=[Inbox(database) for database in databases],
        )
    finally:
        for database in databases:
            await database.close()


def queue_configs(settings: ConsumerSettings) -> list[QueueConfig]:
    """The two queues' processing settings."""
    common = {
        "max_message_count": settings.max_message_count,
        "max_wait_time": settings.max_wait_time,
        "busy_wait_time": settings.busy_wait_time,
        "max_processing_time": settings.max_processing_time,
        "recycle_after_idle": settings.receiver_recycle_after_idle,
        "receivers": settings.receivers_per_queue,
    }
    prefetch = settings.prefetch_count
    return [
        QueueConfig(
            name=settings.audit_queue,
            concurrency=settings.audit_concurrency,
            prefetch_count=_first(settings.audit_prefetch_count, prefetch),
            max_delivery_count=settings.audit_max_delivery_count,
            event_types=frozenset({AUDIT_EVENT_TYPE}),
            **common,  # type: ignore[arg-type]
        ),
        QueueConfig(
            name=settings.notifications_queue,
            concurrency=settings.notifications_concurrency,
            prefetch_count=_first(settings.notifications_prefetch_count, prefetch),
            max_delivery_count=settings.notifications_max_delivery_count,
            event_types=frozenset({NOTIFICATION_EVENT_TYPE}),
            **common,  # type: ignore[arg-type]
        ),
    ]


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def build_router(
    settings: ConsumerSettings, stores: Stores, http: httpx.AsyncClient | None
) -> Router:
    """Routes: audit events to the audit store; notifications by channel."""
    log = DeliveryLog(settings.delivery_log_path) if settings.delivery_log_path else None
    email_send: Sender = log_only
    webhook_send: Sender = log_only
    if settings.delivery_mode == "live":
        assert http is not None
        assert settings.webhook_secret is not None
        templates = Templates(settings.template_dir)
        email_send = EmailSender(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.email_from,
                start_tls=settings.smtp_starttls,
                use_tls=settings.smtp_use_tls,
                username=settings.smtp_username,
                password=(
                    settings.smtp_password.get_secret_value() if settings.smtp_password else None
                ),
                timeout=settings.smtp_timeout,
                validate_certs=settings.smtp_validate_certs,
            ),
            templates,
        )
        webhook_send = WebhookSender(
            http,
            settings.webhook_secret.get_secret_value(),
            allow_http=settings.webhook_allow_http,
            allow_private_networks=settings.webhook_allow_private_networks,
        )
    audit = Route("audit", AuditHandler(stores.audit), settings.audit_retry)
    email = Route(
        "email",
        NotificationHandler("email", email_send, stores.deliveries, log),
        settings.email_retry,
    )
    webhook = Route(
        "webhook",
        NotificationHandler("webhook", webhook_send, stores.deliveries, log),
        settings.webhook_retry,
    )

    def route(envelope: EventEnvelope) -> Route | None:
        if isinstance(envelope, AuditEnvelope):
            return audit
        if isinstance(envelope, NotificationEnvelope):
            return email if envelope.data.channel is NotificationChannel.EMAIL else webhook
        return None

    return route


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
    queues = [settings.audit_queue, settings.notifications_queue]
    while True:
        try:
            await telemetry.measure_dlq_depth(client, queues, settings.dlq_depth_limit)
        except Exception as exc:
            logger.warning("counting dead letters failed: %r", exc)
        await asyncio.sleep(settings.dlq_depth_interval)


async def run_consumer(
    settings: ConsumerSettings, stop: asyncio.Event, *, freeze_after_startup: bool = False
) -> WorkerStats:
    """Process both queues until ``stop`` is set.

    Args:
        settings: The consumer's settings.
        stop: Set it to stop receiving and finish in-flight work.
        freeze_after_startup: Once stores, client and worker are set up, exempt everything
            allocated so far from full garbage collections
            (:func:`common.runtime.freeze_startup_objects`); for the worker process.

    Returns:
        The outcome counters, for the exit summary.
    """
    async with contextlib.AsyncExitStack() as stack:
        stores = await stack.enter_async_context(open_stores(settings))
        http = None
        if settings.delivery_mode == "live":
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    timeout=settings.webhook_timeout,
                    follow_redirects=False,
                    headers={"user-agent": "servicebus-events-consumer"},
                )
            )
        router = build_router(settings, stores, http)
        client = await stack.enter_async_context(open_servicebus_client(settings))
        worker = Worker(
            client,
            queue_configs(settings),
            router,
            shutdown_grace_period=settings.shutdown_grace_period,
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
        background = [asyncio.create_task(_prune_forever(stores, settings), name="inbox-prune")]
        if settings.dlq_depth_interval:
            background.append(
                asyncio.create_task(_measure_dlq_depth_forever(client, settings), name="dlq-depth")
            )
        if freeze_after_startup:
            freeze_startup_objects()
        try:
            await worker.run(stop)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
    return worker.stats
