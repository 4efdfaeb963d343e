"""The ``consumer`` command line (typer + rich).

``consumer`` / ``python -m consumer`` with no command (or ``run``) runs the worker.
Other commands: ``dlq list|show|replay|purge``, ``audit query|verify``, ``migrate``.
A user mistake prints one line (``consumer: error: ...``) and exits non-zero; exit code
2 for bad usage, 1 for a failed operation (and for a tampered audit chain).
"""

import asyncio
import json
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from azure.servicebus.aio import ServiceBusClient
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from common.runtime import event_loop_factory
from common.servicebus import ServiceBusConnection, open_servicebus_client
from consumer import dlq as dlq_api
from consumer.cli_tables import Column, fitted_table
from consumer.stores.audit import AuditQuery, AuditStore
from consumer.stores.database import Database

T = TypeVar("T")
logger = logging.getLogger("consumer")
out = Console()
err = Console(stderr=True)

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Service Bus event consumer: run the worker, manage dead letters, query the audit log.",
)
dlq_app = typer.Typer(
    help="Inspect, replay and purge dead-lettered messages.", no_args_is_help=True
)
audit_app = typer.Typer(help="Query and verify the audit log.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")


class CliError(Exception):
    """Reported as one line; exit code 1."""


class _BusSettings(BaseSettings, ServiceBusConnection):
    model_config = SettingsConfigDict(env_prefix="CONSUMER_", extra="ignore")


class _StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSUMER_", extra="ignore")
    audit_store_url: str = "sqlite+aiosqlite:///audit.db"


# -- run ---------------------------------------------------------------------------------


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        run()


@app.command()
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
        raise typer.Exit(2) from None  # bad usage, as the module docstring says
    from common.telemetry import configure_telemetry

    telemetry = configure_telemetry("consumer", settings)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(_run_worker(settings))
    finally:
        telemetry.shutdown()


async def _run_worker(settings: Any) -> None:
    from consumer.runner import run_consumer
    from consumer.runtime.entities import MissingQueueError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        stats = await run_consumer(settings, stop, freeze_after_startup=True)
    except MissingQueueError as exc:
        raise CliError(str(exc)) from None
    for queue, counters in stats.to_json().items():
        logger.info("stopped: %s %s", queue, json.dumps(counters, sort_keys=True))


@app.command()
def migrate(
    store_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default CONSUMER_AUDIT_STORE_URL).")
    ] = None,
) -> None:
    """Create or upgrade the consumer's tables (the worker also does this at start)."""
    url = store_url or _StoreSettings().audit_store_url

    async def go() -> None:
        database = Database(url)
        try:
            await database.migrate()
        finally:
            await database.close()

    _run(go())
    err.print(f"schema up to date at {_safe_url(url)}")


# -- dlq ---------------------------------------------------------------------------------

QueueOption = Annotated[str, typer.Option("--queue", "-q", help="Main queue name.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ConnectionOption = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        help="Service Bus connection string (default CONSUMER_SERVICEBUS_CONNECTION_STRING "
        "or CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE).",
    ),
]


@asynccontextmanager
async def _bus(connection_string: str | None) -> AsyncIterator[ServiceBusClient]:
    try:
        if connection_string:
            settings = _BusSettings(servicebus_connection_string=SecretStr(connection_string))
        else:
            settings = _BusSettings()
    except ValidationError:
        raise CliError(
            "no Service Bus: set CONSUMER_SERVICEBUS_CONNECTION_STRING, "
            "CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE or --connection-string"
        ) from None
    async with AsyncExitStack() as stack:
        # Only building the client says anything about the connection string; a
        # ValueError from a later SDK call is that operation's failure.
        try:
            client = await stack.enter_async_context(
                open_servicebus_client(settings, retry_total=1)
            )
        except ValueError as exc:
            what = "connection string" if settings.servicebus_connection_string else "namespace"
            raise CliError(f"bad Service Bus {what}: {exc}") from None
        yield client


def _selection(
    sequence_numbers: list[int] | None, reason: str | None, older_than: str | None, everything: bool
) -> dlq_api.Selection:
    age = _parse_duration(older_than, "--older-than") if older_than else None
    if not (sequence_numbers or reason or age or everything):
        raise typer.BadParameter(
            "choose messages with --sequence-number, --reason, --older-than or --all"
        )
    return dlq_api.Selection(
        sequence_numbers=frozenset(sequence_numbers) if sequence_numbers else None,
        reason=reason,
        older_than=age,
        everything=everything,
    )


def _criteria(
    sequence_numbers: list[int] | None, reason: str | None, older_than: str | None
) -> str:
    parts = []
    if sequence_numbers:
        parts.append("sequence number " + ", ".join(str(n) for n in sorted(sequence_numbers)))
    if reason:
        parts.append(f"reason {reason}")
    if older_than:
        parts.append(f"older than {older_than}")
    return "; ".join(parts) or "all"


SequenceOption = Annotated[
    list[int] | None,
    typer.Option("--sequence-number", "-s", help="DLQ sequence number (repeatable)."),
]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Only this DeadLetterReason.")]
AgeOption = Annotated[
    str | None, typer.Option("--older-than", help="Only messages older than this (30m, 2h, 7d).")
]
AllOption = Annotated[bool, typer.Option("--all", help="Select every dead letter.")]

_DLQ_COLUMNS = (
    Column("seq", justify="right"),
    Column("reason"),
    Column("description", flexible=True, min_width=10),
    Column("deliv.", justify="right"),
    Column("enqueued"),
    Column("message id", flexible=True, min_width=8),
    Column("type", flexible=True, min_width=10, optional=True),
)


@dlq_app.command("list")
def dlq_list(
    queue: QueueOption,
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
    as_json: JsonOption = False,
    connection_string: ConnectionOption = None,
) -> None:
    """List dead letters: sequence number, reason, description, deliveries, age, id, type.

    The table fits the terminal (long values end in "…"); --json has them in full.
    """

    async def go() -> list[dlq_api.DeadLetter]:
        async with _bus(connection_string) as client:
            return await dlq_api.list_dead_letters(client, queue, limit=limit)

    items = _run(go())
    if as_json:
        out.print_json(json.dumps([item.to_json() for item in items]))
        return
    rows = [
        (
            str(item.sequence_number),
            item.reason or "",
            " ".join((item.description or "").split()),
            str(item.delivery_count if item.delivery_count is not None else ""),
            item.enqueued_time.strftime("%m-%d %H:%M") if item.enqueued_time else "",
            item.message_id or "",
            item.event_type or "",
        )
        for item in items
    ]
    title = f"{queue}/$DeadLetterQueue: {len(items)} message(s), times UTC"
    out.print(fitted_table(title, _DLQ_COLUMNS, rows, out.width))


@dlq_app.command("show")
def dlq_show(
    queue: QueueOption,
    sequence_number: Annotated[int, typer.Argument(help="DLQ sequence number.")],
    as_json: JsonOption = False,
    connection_string: ConnectionOption = None,
) -> None:
    """Show one dead letter with its properties and body."""

    async def go() -> dlq_api.DeadLetter:
        async with _bus(connection_string) as client:
            return await dlq_api.show(client, queue, sequence_number)

    item = _run(go())
    data = item.to_json(with_body=True)
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = Table(show_header=False, title=f"dead letter {sequence_number} on {queue}")
    for key, value in data.items():
        if key != "body":
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    out.print(table)
    out.print(data["body"], markup=False, highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    queue: QueueOption,
    sequence_number: SequenceOption = None,
    reason: ReasonOption = None,
    older_than: AgeOption = None,
    everything: AllOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would be replayed.")
    ] = False,
    as_json: JsonOption = False,
    connection_string: ConnectionOption = None,
) -> None:
    """Send selected dead letters back to the queue (new message id, provenance properties).

    The selection is taken once, before anything is sent: each selected dead letter is
    replayed at most once, and unselected ones keep their delivery count.
    """
    selection = _selection(sequence_number, reason, older_than, everything)

    async def go(
        progress: dlq_api.Progress | None, selected: dlq_api.Selected | None
    ) -> dlq_api.Outcome:
        async with _bus(connection_string) as client:
            return await dlq_api.replay(
                client,
                queue,
                selection,
                dry_run=dry_run,
                progress=progress,
                on_selected=selected,
            )

    if dry_run:
        outcome, error = _with_progress(f"replaying to {queue}", go, quiet=True)
    else:
        outcome, error = _with_progress(f"replaying to {queue}", go, quiet=as_json)
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "matched": [item.to_json() for item in outcome.matched],
                    "replayed": {str(k): v for k, v in outcome.replayed.items()},
                    "failed": {str(k): v for k, v in outcome.failed.items()},
                    "missing": outcome.missing,
                    "error": error,
                }
            )
        )
    elif dry_run:
        out.print(f"would replay {len(outcome.matched)} message(s) to {queue}:")
        for item in outcome.matched:
            _line(f"  {item.sequence_number}  {item.message_id}  {item.reason}")
    elif not outcome.matched and error is None:
        out.print(f"no dead letters of {queue}/$DeadLetterQueue match; nothing replayed")
    else:
        _report(outcome, f"replayed {len(outcome.replayed)}", f"to {queue}", error)
    _fail_if_incomplete(outcome, "replayed", error)


@dlq_app.command("purge")
def dlq_purge(
    queue: QueueOption,
    sequence_number: SequenceOption = None,
    reason: ReasonOption = None,
    older_than: AgeOption = None,
    everything: AllOption = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask (needed when stdin is not a terminal).")
    ] = False,
    connection_string: ConnectionOption = None,
) -> None:
    """Delete selected dead letters for good (asks first, showing how many)."""
    selection = _selection(sequence_number, reason, older_than, everything)
    where = f"{queue}/$DeadLetterQueue"
    if not yes:

        async def peek() -> list[dlq_api.DeadLetter]:
            async with _bus(connection_string) as client:
                return await dlq_api.select(client, queue, selection)

        chosen = _run(peek())
        if not chosen:
            out.print(f"no dead letters of {where} match; nothing purged")
            return
        count = f"{len(chosen)} dead letter(s)"
        if not sys.stdin.isatty():
            raise CliError(
                f"refusing to purge {count} without confirmation: "
                "stdin is not a terminal; pass --yes"
            )
        for item in chosen[:5]:
            _line(f"  {item.sequence_number}  {item.reason or ''}  {item.message_id or ''}")
        if len(chosen) > 5:
            out.print(f"  … and {len(chosen) - 5} more")
        criteria = _criteria(sequence_number, reason, older_than)
        typer.confirm(f"Delete {count} of {where} ({criteria})?", abort=True)
        # Exactly what was confirmed: nothing that arrived since the prompt.
        selection = dlq_api.Selection(
            sequence_numbers=frozenset(item.sequence_number for item in chosen)
        )

    async def go(
        progress: dlq_api.Progress | None, selected: dlq_api.Selected | None
    ) -> dlq_api.Outcome:
        async with _bus(connection_string) as client:
            return await dlq_api.purge(
                client, queue, selection, progress=progress, on_selected=selected
            )

    outcome, error = _with_progress(f"purging {where}", go, quiet=False)
    if not outcome.matched and error is None:
        out.print(f"no dead letters of {where} match; nothing purged")
        return
    _report(outcome, f"purged {outcome.purged}", f"from {where}", error)
    _fail_if_incomplete(outcome, "purged", error)


def _with_progress(
    label: str,
    operation: Callable[
        [dlq_api.Progress | None, dlq_api.Selected | None], Awaitable[dlq_api.Outcome]
    ],
    *,
    quiet: bool,
) -> tuple[dlq_api.Outcome, str | None]:
    """Run a replay or purge with a progress bar (stderr); returns its outcome and, if it
    stopped early, the error that stopped it."""

    def announce(total: int) -> None:
        if total:
            err.print(f"{label}: {total} dead letter(s) selected")

    try:
        if quiet:
            return _run_outcome(operation(None, None))
        if not err.is_terminal:  # a bar would only add blank lines to a log
            return _run_outcome(operation(None, announce))
        columns = (
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(label, total=None)

            def selected(total: int) -> None:
                bar.update(task, total=total)
                announce(total)

            return _run_outcome(operation(lambda n: bar.advance(task, n), selected))
    except KeyboardInterrupt:
        err.print(f"{label}: interrupted; see the DLQ for what is left")
        raise


def _run_outcome(awaitable: Awaitable[dlq_api.Outcome]) -> tuple[dlq_api.Outcome, str | None]:
    try:
        return _run(awaitable), None
    except CliError as exc:
        cause = exc.__context__
        if isinstance(cause, dlq_api.DlqError) and cause.outcome and cause.outcome.matched:
            return cause.outcome, str(exc)  # stopped after the snapshot: report the work done
        raise


def _report(outcome: dlq_api.Outcome, done: str, where: str, error: str | None) -> None:
    """What a replay or purge did, also when it stopped early (stdout)."""
    stopped = " before it stopped" if error else ""
    out.print(f"{done} of {len(outcome.matched)} selected dead letter(s) {where}{stopped}")
    for number, why in sorted(outcome.failed.items()):
        _line(f"  {number}: {why}")
    if outcome.missing:
        numbers = ", ".join(str(n) for n in outcome.missing)
        _line(f"  no longer in the DLQ or locked by another receiver: {numbers}")


def _fail_if_incomplete(outcome: dlq_api.Outcome, verb: str, error: str | None) -> None:
    """Exit 1 with one line naming what failed, if anything selected was not done."""
    if error is not None:
        raise CliError(error)
    undone = len(outcome.failed) + len(outcome.missing)
    if not undone:
        return
    if outcome.failed:
        number, why = min(outcome.failed.items())
        first = f"{number}: {why}"
    else:
        first = f"{outcome.missing[0]}: no longer in the DLQ or locked by another receiver"
    raise CliError(
        f"{undone} of {len(outcome.matched)} selected dead letter(s) not {verb}; first {first}"
    )


def _line(text: str) -> None:
    """One stdout line, cut to the terminal width."""
    out.print(text, overflow="ellipsis", no_wrap=True, crop=True, markup=False, highlight=False)


# -- audit -------------------------------------------------------------------------------

StoreOption = Annotated[
    str | None,
    typer.Option("--store-url", help="SQLAlchemy URL (default CONSUMER_AUDIT_STORE_URL)."),
]


_AUDIT_COLUMNS = (
    Column("seq", justify="right"),
    Column("occurred"),
    Column("actor", flexible=True, min_width=6),
    Column("action", flexible=True, min_width=8),
    Column("resource", flexible=True, min_width=8),
    Column("outcome"),
    Column("event id", flexible=True, min_width=8),
)


@audit_app.command("query")
def audit_query(
    actor: Annotated[str | None, typer.Option(help="Actor id.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Action, or prefix with * (invoice.*).")
    ] = None,
    resource: Annotated[str | None, typer.Option(help="Resource as type:id, or type.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant id.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Occurred at/after: ISO-8601 (UTC if no offset) or 2h, 7d.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Occurred before: same formats.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="Most records, newest first.")
    ] = 50,
    as_json: JsonOption = False,
    store_url: StoreOption = None,
) -> None:
    """Search audit records."""
    filters = AuditQuery(
        actor=actor,
        action=action,
        resource=resource,
        tenant=tenant,
        since=_parse_time(since, "--since") if since else None,
        until=_parse_time(until, "--until") if until else None,
        limit=limit,
    )

    async def go() -> list[Any]:
        async with _store(store_url) as store:
            return await store.query(filters)

    records = _run(go())
    if as_json:
        out.print_json(json.dumps([record.to_json() for record in records]))
        return
    rows = [
        (
            str(record.seq),
            record.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            record.actor_id,
            record.action,
            f"{record.resource_type}:{record.resource_id}",
            record.outcome,
            record.event_id,
        )
        for record in records
    ]
    title = f"{len(records)} audit record(s), newest first, times UTC"
    out.print(fitted_table(title, _AUDIT_COLUMNS, rows, out.width))


@audit_app.command("verify")
def audit_verify(as_json: JsonOption = False, store_url: StoreOption = None) -> None:
    """Check the hash chain; exit 1 and name the first bad record if it was tampered with."""

    async def go() -> Any:
        async with _store(store_url) as store:
            return await store.verify()

    report = _run(go())
    if as_json:
        out.print_json(json.dumps(report.__dict__))
    elif report.ok:
        out.print(
            f"[green]OK[/]: {report.checked} record(s), chain intact (head seq {report.head_seq})"
        )
    else:
        err.print(
            f"[red]TAMPERED[/]: record seq {report.first_bad_seq}"
            f"{f' (event {report.first_bad_event_id})' if report.first_bad_event_id else ''}: "
            f"{report.problem}; {report.checked} record(s) before it verified"
        )
    if not report.ok:
        raise typer.Exit(1)


@asynccontextmanager
async def _store(store_url: str | None) -> AsyncIterator[AuditStore]:
    url = store_url or _StoreSettings().audit_store_url
    _require_sqlite_file(url)
    try:
        database = Database(url)
    except Exception as exc:
        raise CliError(f"bad store URL: {exc}") from None
    try:
        await database.migrate()
        yield AuditStore(database)
    finally:
        await database.close()


# -- helpers -----------------------------------------------------------------------------


def _require_sqlite_file(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:" and not Path(path).exists():
            raise CliError(f"no audit store at {path}")


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(text: str, option: str) -> timedelta:
    match = _DURATION.match(text.strip().lower())
    if match:
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        raise typer.BadParameter(f"{option}: {text!r} is not a duration like 30m, 2h, 7d") from None


def _parse_time(text: str, option: str) -> datetime:
    if _DURATION.match(text.strip().lower()):
        return datetime.now(UTC) - _parse_duration(text, option)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{option}: {text!r} is not an ISO-8601 time or 2h/7d") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    try:
        return asyncio.run(main())
    except dlq_api.DlqError as exc:
        raise CliError(str(exc)) from None


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turn user mistakes into one line."""
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    try:
        result = app(args=argv, prog_name="consumer", standalone_mode=False)
    except typer.TyperException as exc:
        print(f"consumer: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CliError as exc:
        print(f"consumer: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        print("consumer: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(result, int) and result:
        sys.exit(result)
