"""How ``dlq replay`` and ``dlq purge`` show their work: a progress bar while they run, then
what was done, and exit 1 naming the first dead letter that was not."""

from collections.abc import Awaitable, Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consumer import dlq as dlq_api
from consumer.cli.shared import CliError, err, line, out, run

Operation = Callable[[dlq_api.Progress | None, dlq_api.Selected | None], Awaitable[dlq_api.Outcome]]
"""A replay or purge, given its progress and selected-count callbacks."""


def with_progress(
    label: str, operation: Operation, *, quiet: bool
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
        return run(awaitable), None
    except CliError as exc:
        cause = exc.__context__
        if isinstance(cause, dlq_api.DlqError) and cause.outcome and cause.outcome.matched:
            return cause.outcome, str(exc)  # stopped after the snapshot: report the work done
        raise


def report(outcome: dlq_api.Outcome, done: str, where: str, error: str | None) -> None:
    """What a replay or purge did, also when it stopped early (stdout)."""
    stopped = " before it stopped" if error else ""
    out.print(f"{done} of {len(outcome.matched)} selected dead letter(s) {where}{stopped}")
    for number, why in sorted(outcome.failed.items()):
        line(f"  {number}: {why}")
    if outcome.missing:
        numbers = ", ".join(str(n) for n in outcome.missing)
        line(f"  no longer in the DLQ or locked by another receiver: {numbers}")


def fail_if_incomplete(outcome: dlq_api.Outcome, verb: str, error: str | None) -> None:
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
