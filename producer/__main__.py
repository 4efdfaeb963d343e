"""Command line of the producer.

``python -m producer [serve]``
    Serve the API with uvicorn on ``PRODUCER_HOST:PRODUCER_PORT``. SIGTERM stops accepting
    connections, gives in-flight requests and publishes ``PRODUCER_SHUTDOWN_GRACE`` each,
    and leaves whatever is unpublished in the outbox.
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

from common.telemetry import configure_telemetry
from producer.app import create_app
from producer.settings import ProducerSettings


def _settings() -> ProducerSettings:
    try:
        return ProducerSettings()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        print(
            f"producer: invalid settings (PRODUCER_* environment): {where}: {first['msg']}",
            file=sys.stderr,
        )
        sys.exit(2)


def _serve() -> int:
    settings = _settings()
    telemetry = configure_telemetry("producer", settings)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal with
    # the handler that was installed before it started; make that a no-op so that a
    # clean shutdown exits 0 (as process supervisors and the tests expect).
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(
        create_app(settings, freeze_after_startup=True),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace.total_seconds())),
    )
    telemetry.shutdown()
    return 0


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

    try:
        key, entry = new_api_key(name)
    except ValidationError:
        print(
            "producer: NAME must be letters, digits, '.', '_' or '-' (at most 64)",
            file=sys.stderr,
        )
        return 2
    print(f"key (give to the caller, header X-API-Key): {key}")
    print(f"entry (add to PRODUCER_API_KEYS):           {entry}")
    return 0


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
