"""Command line of the console.

``python -m console [serve]``
    Serve the console with uvicorn on ``CONSOLE_HOST:CONSOLE_PORT`` (127.0.0.1:8090).
``python -m console new-api-key NAME [--role reader|operator]``
    Print a new random key and its ``CONSOLE_API_KEYS`` entry (``NAME:sha256:role``).

Exit codes: 0 done, 1 failed, 2 bad arguments or settings (one line naming the variable).
"""

import signal
import sys
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from pydantic_settings import SettingsError

from common.api_key_command import print_new_api_key
from common.settings_errors import describe_settings_error
from common.telemetry import configure_telemetry
from console.apikeys import ROLES, Role, new_console_key
from console.app import create_app
from console.settings import ConsoleSettings

app = typer.Typer(add_completion=False, help="The servicebus-events operations console.")


def load_settings() -> ConsoleSettings:
    """The settings, or exit 2 with one line naming what is wrong."""
    try:
        return ConsoleSettings()
    except (ValidationError, SettingsError) as exc:
        problem = describe_settings_error(exc, ConsoleSettings)
        print(f"console: invalid settings: {problem}", file=sys.stderr)
        sys.exit(2)


@app.command("serve")
def serve() -> None:
    """Serve the console (the default command)."""
    settings = load_settings()
    if settings.auth == "api-key" and not settings.api_keys:
        print(
            "console: no way to sign in: set CONSOLE_API_KEYS (python -m console new-api-key "
            "NAME --role operator) or CONSOLE_AUTH=easyauth",
            file=sys.stderr,
        )
        sys.exit(2)
    telemetry = configure_telemetry("console", settings)
    # uvicorn re-raises the signal after its graceful shutdown; a clean stop exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_config=None,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        telemetry.shutdown()


@app.command("new-api-key")
def new_api_key(
    name: Annotated[str, typer.Argument(help="Who the key is for (letters, digits, . _ -).")],
    role: Annotated[
        str, typer.Option(help="reader (look) or operator (replay, purge).")
    ] = "reader",
) -> None:
    """Print a new key and its CONSOLE_API_KEYS entry."""
    if role not in ROLES:
        raise typer.BadParameter("reader or operator", param_hint="'--role'")
    chosen: Role = "operator" if role == "operator" else "reader"
    raise typer.Exit(
        print_new_api_key(
            "console",
            lambda: new_console_key(name, chosen),
            key_label=f"key (give to {name}): ",
            entry_label="CONSOLE_API_KEYS entry: ",
        )
    )


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        serve()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="console")


if __name__ == "__main__":
    main()
