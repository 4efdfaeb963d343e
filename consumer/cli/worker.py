"""``consumer run`` (the default command) and ``consumer migrate``."""

import asyncio
import json
import logging
import re
import signal
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from common.runtime import event_loop_factory
from consumer.cli.shared import CliError, StoreSettings, err
from consumer.cli.shared import run as run_async
from consumer.stores.database import Database

logger = logging.getLogger("consumer")


def run() -> None:
    """Run the worker until SIGTERM or SIGINT (settings from CONSUMER_* variables)."""
    from pydantic_settings import SettingsError

    from common.settings_errors import describe_settings_error
    from consumer.settings import ConsumerSettings

    try:
        settings = ConsumerSettings()
    except (ValidationError, SettingsError) as exc:
        problem = describe_settings_error(exc, ConsumerSettings)
        print(f"consumer: error: invalid settings: {problem}", file=sys.stderr)
        raise typer.Exit(2) from None  # bad usage, as consumer.cli's docstring says
    from common.telemetry import configure_telemetry

    telemetry = configure_telemetry("consumer", settings)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(_run_worker(settings))
    finally:
        telemetry.shutdown()


async def _run_worker(settings: Any) -> None:
    from consumer.runner import run_consumer
    from consumer.runtime.entities import SourceCheckError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        stats = await run_consumer(settings, stop, freeze_after_startup=True)
    except SourceCheckError as exc:
        raise CliError(str(exc)) from None
    for queue, counters in stats.to_json().items():
        logger.info("stopped: %s %s", queue, json.dumps(counters, sort_keys=True))


def migrate(
    store_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default CONSUMER_AUDIT_STORE_URL).")
    ] = None,
) -> None:
    """Create or upgrade the consumer's tables (the worker also does this at start)."""
    url = store_url or StoreSettings().audit_store_url

    async def go() -> None:
        database = Database(url)
        try:
            await database.migrate()
        finally:
            await database.close()

    run_async(go())
    err.print(f"schema up to date at {_safe_url(url)}")


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
