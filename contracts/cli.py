"""``python -m contracts``: generate, check and gate the contract artefacts.

Commands (run from the repository root, or pass ``--root``):

* ``generate``: write ``schemas/`` and the catalogue in ``docs/contracts.md``;
* ``check``: exit 1 if any generated file is missing or stale (one line each);
* ``gate``: exit 1 on a breaking change against ``schemas/released/`` (one line each);
* ``release``: record the current schemas as released snapshots.

Exit codes: 0 success, 1 stale artefacts or breaking changes, 2 usage or input error
(printed as one line, no traceback).
"""

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
    typer.Option(help="Repository root (holds schemas/ and docs/).", file_okay=False),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command()
def generate(root: Root = Path()) -> None:
    """Write schemas/ and the event catalogue in docs/contracts.md."""
    try:
        changed = artefacts.generate(root)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    for path in changed:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(changed)} file(s) changed")


@app.command()
def check(root: Root = Path()) -> None:
    """Exit 1 if a generated artefact is missing or out of date."""
    try:
        problems = artefacts.stale_files(root)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
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
        typer.Option(help="Check this directory's jsonschema/ instead of the models."),
    ] = None,
) -> None:
    """Exit 1 on a breaking change against the released schemas."""
    try:
        problems = artefacts.gate(root, current)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    for problem in problems:
        typer.echo(str(problem), err=True)
    if problems:
        typer.echo(
            "breaking change: keep the released version and add a new schema version "
            "(docs/contracts.md, Versioning policy)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo("no breaking changes against schemas/released/")


@app.command()
def release(root: Root = Path()) -> None:
    """Record the current schemas as released (runs the gate first)."""
    try:
        problems = artefacts.gate(root)
        if problems:
            for problem in problems:
                typer.echo(str(problem), err=True)
            raise typer.Exit(1)
        written = artefacts.release(root)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(written)} snapshot(s) written")


def main() -> None:
    """Console entry point."""
    app()
