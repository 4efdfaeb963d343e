"""``python -m contracts``: generate, check and gate the contract artefacts.

Commands (run from the repository root, or pass ``--root``):

* ``generate``: write ``schemas/`` and the catalogue in ``docs/contracts.md``;
* ``check``: exit 1 if any generated file is missing or stale (one line each);
* ``gate``: exit 1 on a breaking change against ``schemas/released/`` (one line each);
* ``release``: record the current schemas as released snapshots.

Exit codes: 0 success, 1 stale artefacts or breaking changes, 2 usage or input error
(printed as one line, no traceback).
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from contracts import artefacts

app = typer.Typer(
    help="Contract artefacts: JSON Schema, AsyncAPI, event catalogue, breaking-change gate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Root = Annotated[
    Path,
    typer.Option(
        help="Repository root (holds schemas/ and docs/).",
        exists=True,
        file_okay=False,
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _input_error(exc: OSError | ValueError, root: Path) -> typer.Exit:
    """One line for a file that cannot be read or written, without Python's errno."""
    if not isinstance(exc, OSError):
        return _fail(str(exc))
    if isinstance(exc, FileNotFoundError) and exc.filename == str(root / artefacts.CONTRACTS_DOC):
        return _fail(
            f"--root {root}: no {artefacts.CONTRACTS_DOC} there (not the repository root?)"
        )
    return _fail(f"{exc.filename or root}: {exc.strerror or exc}")


@app.command()
def generate(root: Root = Path()) -> None:
    """Write schemas/ and the event catalogue in docs/contracts.md."""
    try:
        changed = artefacts.generate(root)
    except (OSError, ValueError) as exc:
        raise _input_error(exc, root) from None
    for path in changed:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(changed)} file(s) changed")


@app.command()
def check(root: Root = Path()) -> None:
    """Exit 1 if a generated artefact is missing or out of date."""
    try:
        problems = artefacts.stale_files(root)
    except (OSError, ValueError) as exc:
        raise _input_error(exc, root) from None
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo("run: python -m contracts generate", err=True)
        raise typer.Exit(1)
    typer.echo("generated artefacts are up to date")


@app.command(name="gate")
def gate_command(
    root: Root = Path(),
    current: Annotated[
        Path | None,
        typer.Option(
            help="Check this directory's jsonschema/ instead of the models.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Exit 1 on a breaking change against the released schemas."""
    if current is not None and not any((current / "jsonschema").glob("*/*.json")):
        # Otherwise every released version would be reported as dropped.
        raise _fail(f"--current {current}: no jsonschema/<type>/<version>.json in it")
    try:
        result = artefacts.gate(root, current)
    except (OSError, ValueError) as exc:
        raise _input_error(exc, root) from None
    for problem in result.problems:
        typer.echo(str(problem), err=True)
    if result.problems:
        typer.echo(
            "breaking change: keep the released version and add a new schema version "
            "(docs/contracts.md, Versioning policy)",
            err=True,
        )
        raise typer.Exit(1)
    if result.acknowledged:
        typer.echo(
            f"{len(result.acknowledged)} acknowledged correction(s), see "
            f"{artefacts.ACKNOWLEDGED_FILE}"
        )
    typer.echo("no breaking changes against schemas/released/")


@app.command()
def release(root: Root = Path()) -> None:
    """Record the current schemas as released (runs the gate first)."""
    try:
        problems = artefacts.gate(root).problems
        if problems:
            for problem in problems:
                typer.echo(str(problem), err=True)
            raise typer.Exit(1)
        written = artefacts.release(root)
    except (OSError, ValueError) as exc:
        raise _input_error(exc, root) from None
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(written)} snapshot(s) written")


def main() -> None:
    """Console entry point: a usage error is one line (``error: ...``) and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # bad option or argument, without typer's box
        message = exc.format_message()
        if message:  # empty when typer has printed the help instead (no command given)
            typer.echo(f"error: {message}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
