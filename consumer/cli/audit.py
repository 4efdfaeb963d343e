"""``consumer audit query|verify``: search the audit log, check its hash chain."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from consumer.cli.durations import parse_time
from consumer.cli.shared import CliError, JsonOption, StoreSettings, err, out, run
from consumer.cli.tables import Column, fitted_table
from consumer.stores.audit import AuditQuery, AuditStore
from consumer.stores.database import Database

audit_app = typer.Typer(help="Query and verify the audit log.", no_args_is_help=True)

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
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        limit=limit,
    )

    async def go() -> list[Any]:
        async with _store(store_url) as store:
            return await store.query(filters)

    records = run(go())
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

    report = run(go())
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
    url = store_url or StoreSettings().audit_store_url
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


def _require_sqlite_file(url: str) -> None:
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1]
        if path and path != ":memory:" and not Path(path).exists():
            raise CliError(f"no audit store at {path}")
