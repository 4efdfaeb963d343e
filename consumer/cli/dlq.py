"""``consumer dlq list|show|replay|purge``: inspect, replay and purge dead-lettered messages.

The operations themselves are :mod:`consumer.dlq`; this module reads options, asks before a
purge and prints.
"""

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import typer
from azure.servicebus.aio import ServiceBusClient
from pydantic import SecretStr, ValidationError
from rich.table import Table

from common.servicebus import open_servicebus_client
from consumer import dlq as dlq_api
from consumer.cli.dlq_report import fail_if_incomplete, report, with_progress
from consumer.cli.durations import parse_duration
from consumer.cli.shared import BusSettings, CliError, JsonOption, line, out, run
from consumer.cli.tables import Column, fitted_table
from consumer.runtime.entities import EntityPath

dlq_app = typer.Typer(
    help="Inspect, replay and purge dead-lettered messages.", no_args_is_help=True
)

QueueOption = Annotated[str | None, typer.Option("--queue", "-q", help="Main queue name.")]
SubscriptionOption = Annotated[
    str | None,
    typer.Option(
        "--subscription",
        help="Instead of a queue: a topic subscription, <topic>/Subscriptions/<name> "
        "(replays go through the topic, meant for this subscription).",
    ),
]
ConnectionOption = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        help="Service Bus connection string (default CONSUMER_SERVICEBUS_CONNECTION_STRING "
        "or CONSUMER_SERVICEBUS_FULLY_QUALIFIED_NAMESPACE).",
    ),
]
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
    queue: QueueOption = None,
    subscription: SubscriptionOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
    as_json: JsonOption = False,
    connection_string: ConnectionOption = None,
) -> None:
    """List dead letters: sequence number, reason, description, deliveries, age, id, type.

    The table fits the terminal (long values end in "…"); --json has them in full.
    """
    queue = _source(queue, subscription)

    async def go() -> list[dlq_api.DeadLetteredMessage]:
        async with _bus(connection_string) as client:
            return await dlq_api.list_dead_letters(client, queue, limit=limit)

    items = run(go())
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
    sequence_number: Annotated[int, typer.Argument(help="DLQ sequence number.")],
    queue: QueueOption = None,
    subscription: SubscriptionOption = None,
    as_json: JsonOption = False,
    connection_string: ConnectionOption = None,
) -> None:
    """Show one dead letter with its properties and body."""
    queue = _source(queue, subscription)

    async def go() -> dlq_api.DeadLetteredMessage:
        async with _bus(connection_string) as client:
            return await dlq_api.show(client, queue, sequence_number)

    item = run(go())
    data = item.to_json(with_body=True)
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(_show_table(f"dead letter {sequence_number} on {queue}", data))
    out.print(data["body"], markup=False, highlight=False)


def _show_table(title: str, data: dict[str, Any]) -> Table:
    """Field / value rows, one application property a row, as wide as the terminal at most.

    Values fold onto further lines rather than end in "…": this view is the one that shows
    a dead letter in full (ids, descriptions and trace context are long and unbroken).
    """
    table = Table(show_header=False, title=title)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in data.items():
        if key == "body":
            continue
        if key == "properties" and isinstance(value, dict) and value:
            table.add_row(key, "")
            for name, item in value.items():
                table.add_row(f"  {name}", str(item))
        else:
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    return table


@dlq_app.command("replay")
def dlq_replay(
    queue: QueueOption = None,
    subscription: SubscriptionOption = None,
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
    replayed at most once, and unselected ones keep their delivery count. A subscription's
    dead letters go to its topic with replayTarget=<subscription name>: other
    subscriptions whose rules match get the copy too unless a rule excludes it.
    """
    queue = _source(queue, subscription)
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

    where = _replay_destination(queue)
    outcome, error = with_progress(f"replaying to {where}", go, quiet=dry_run or as_json)
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
        out.print(f"would replay {len(outcome.matched)} message(s) to {where}:")
        for item in outcome.matched:
            line(f"  {item.sequence_number}  {item.message_id}  {item.reason}")
    elif not outcome.matched and error is None:
        out.print(f"no dead letters of {queue}/$DeadLetterQueue match; nothing replayed")
    else:
        report(outcome, f"replayed {len(outcome.replayed)}", f"to {where}", error)
    fail_if_incomplete(outcome, "replayed", error)


@dlq_app.command("purge")
def dlq_purge(
    queue: QueueOption = None,
    subscription: SubscriptionOption = None,
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
    queue = _source(queue, subscription)
    selection = _selection(sequence_number, reason, older_than, everything)
    where = f"{queue}/$DeadLetterQueue"
    if not yes:

        async def peek() -> list[dlq_api.DeadLetteredMessage]:
            async with _bus(connection_string) as client:
                return await dlq_api.select(client, queue, selection)

        chosen = run(peek())
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
            line(f"  {item.sequence_number}  {item.reason or ''}  {item.message_id or ''}")
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

    outcome, error = with_progress(f"purging {where}", go, quiet=False)
    if not outcome.matched and error is None:
        out.print(f"no dead letters of {where} match; nothing purged")
        return
    report(outcome, f"purged {outcome.purged}", f"from {where}", error)
    fail_if_incomplete(outcome, "purged", error)


@asynccontextmanager
async def _bus(connection_string: str | None) -> AsyncIterator[ServiceBusClient]:
    try:
        if connection_string:
            settings = BusSettings(servicebus_connection_string=SecretStr(connection_string))
        else:
            settings = BusSettings()
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


def _source(queue: str | None, subscription: str | None) -> str:
    """The entity path the command works on: ``--queue`` or ``--subscription``."""
    if (queue is None) == (subscription is None):
        raise typer.BadParameter("give --queue or --subscription (one of them)")
    if subscription is not None:
        try:
            entity = EntityPath.parse(subscription)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if entity.topic is None:
            raise typer.BadParameter(
                f"--subscription {subscription!r}: expected <topic>/Subscriptions/<name>"
            )
        return entity.path
    assert queue is not None
    return queue


def _replay_destination(queue: str) -> str:
    """Where replayed copies go, as the output says it."""
    entity = EntityPath.parse(queue)
    if entity.topic is None:
        return queue
    return f"topic {entity.topic} (replayTarget={entity.name})"


def _selection(
    sequence_numbers: list[int] | None, reason: str | None, older_than: str | None, everything: bool
) -> dlq_api.Selection:
    age = parse_duration(older_than, "--older-than") if older_than else None
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
    """The selection as the purge prompt words it."""
    parts = []
    if sequence_numbers:
        parts.append("sequence number " + ", ".join(str(n) for n in sorted(sequence_numbers)))
    if reason:
        parts.append(f"reason {reason}")
    if older_than:
        parts.append(f"older than {older_than}")
    return "; ".join(parts) or "all"
