"""The ``consumer`` command line (typer + rich).

``consumer`` / ``python -m consumer`` with no command (or ``run``) runs the worker.
Other commands: ``dlq list|show|replay|purge``, ``audit query|verify``, ``migrate``.
A user mistake prints one line (``consumer: error: ...``) and exits non-zero; exit code
2 for bad usage, 1 for a failed operation (and for a tampered audit chain).

One module per command group (:mod:`~consumer.cli.worker` for ``run`` and ``migrate``,
:mod:`~consumer.cli.dlq`, :mod:`~consumer.cli.audit`); this one joins them and turns
errors into exit codes.
"""

import logging
import sys

import typer

from consumer.cli.audit import audit_app
from consumer.cli.dlq import dlq_app
from consumer.cli.shared import CliError
from consumer.cli.worker import migrate, run

__all__ = ["CliError", "app", "main"]

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Service Bus event consumer: run the worker, manage dead letters, query the audit log.",
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
app.command("run")(run)
app.command("migrate")(migrate)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        run()


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
