"""Command line of the producer.

``python -m producer [serve]``
    Serve the API with uvicorn on ``PRODUCER_HOST:PRODUCER_PORT``. Exits 1 at once, with
    one line naming the queue and its setting, when Service Bus says a queue does not
    exist (an unreachable Service Bus does not stop it). SIGTERM stops accepting
    connections and shuts down by one deadline, ``PRODUCER_SHUTDOWN_GRACE`` after it
    (:mod:`producer.shutdown`): in-flight requests and publishes finish, Service Bus
    senders close and telemetry is flushed; whatever is unpublished stays in the outbox.
    Logs ``shutdown finished X s before its deadline`` and exits 0.
``python -m producer migrate``
    Apply the outbox migrations to ``PRODUCER_DATABASE_URL`` and exit (for deployments
    that set ``PRODUCER_MIGRATE_ON_STARTUP=false``).
``python -m producer new-api-key NAME``
    Print a new random API key and its ``PRODUCER_API_KEYS`` entry (``NAME:sha256``).

Exit codes: 0 done, 1 failed, 2 bad arguments or settings.
"""

import asyncio
import logging
import signal
import sys
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from common.api_key_command import print_new_api_key
from common.settings_errors import describe_settings_error
from common.telemetry import SHUTDOWN_TIMEOUT as TELEMETRY_TIMEOUT
from common.telemetry import configure_telemetry
from producer.app import create_app
from producer.errors import MissingQueueError
from producer.server import DeadlineServer, server_limits
from producer.settings import ProducerSettings
from producer.shutdown import MIN_CLOSE_TIME, ShutdownDeadline
from producer.startup import require_queues


def _settings() -> ProducerSettings:
    try:
        return ProducerSettings()
    except (ValidationError, SettingsError) as exc:
        problem = describe_settings_error(exc, ProducerSettings)
        print(f"producer: invalid settings: {problem}", file=sys.stderr)
        sys.exit(2)


def _serve() -> int:
    settings = _settings()
    telemetry = configure_telemetry("producer", settings)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal with
    # the handler that was installed before it started; make that a no-op so that a
    # clean shutdown exits 0 (as process supervisors and the tests expect).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        # Also checked in the app's lifespan; here first so that a missing queue ends the
        # process with one line instead of uvicorn's start-up traceback.
        asyncio.run(require_queues(settings))
    except MissingQueueError as exc:
        print(f"producer: {exc}", file=sys.stderr)
        telemetry.shutdown()
        return 1
    deadline = ShutdownDeadline(settings.shutdown_grace.total_seconds())
    config = uvicorn.Config(
        create_app(settings, freeze_after_startup=True, shutdown=deadline),
        host=settings.host,
        port=settings.port,
        # Logging is already configured (configure_telemetry): uvicorn's records go
        # through the same handler (time, trace id, JSON) instead of its own.
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=deadline.http_drain_seconds(),
        **server_limits(settings),
    )
    server = DeadlineServer(config, deadline)
    try:
        server.run()
    finally:
        # Telemetry takes what the deadline left, so the process exits by it too.
        telemetry.shutdown(min(TELEMETRY_TIMEOUT, max(deadline.left(), MIN_CLOSE_TIME)))
    return 0 if server.started else 1


def _migrate() -> int:
    from producer.outbox.database import create_outbox_engine, run_migrations

    settings = _settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def migrate() -> None:
        engine = create_outbox_engine(settings.database_url)
        try:
            await run_migrations(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(migrate())
    except Exception as exc:
        print(f"producer: migration failed: {exc!r}", file=sys.stderr)
        return 1
    print("producer: outbox schema is up to date")
    return 0


def _new_api_key(name: str) -> int:
    from producer.apikeys import new_api_key

    return print_new_api_key(
        "producer",
        lambda: new_api_key(name),
        key_label="key (give to the caller, header X-API-Key): ",
        entry_label="entry (add to PRODUCER_API_KEYS):           ",
    )


app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    invoke_without_command=True,
    help="Service Bus event producer: serve the API, migrate the outbox, make API keys.",
)


@app.callback()
def _default(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        raise typer.Exit(_serve())


@app.command()
def serve() -> None:
    """Serve the HTTP API (the default command)."""
    raise typer.Exit(_serve())


@app.command()
def migrate() -> None:
    """Apply the outbox migrations to PRODUCER_DATABASE_URL and exit."""
    raise typer.Exit(_migrate())


@app.command("new-api-key")
def new_api_key(
    name: Annotated[str, typer.Argument(help="Caller name, recorded as the events' source.")],
) -> None:
    """Print a new API key and its PRODUCER_API_KEYS entry (NAME:sha256)."""
    raise typer.Exit(_new_api_key(name))


def main() -> None:
    """Console entry point."""
    app(prog_name="producer")


if __name__ == "__main__":
    main()
