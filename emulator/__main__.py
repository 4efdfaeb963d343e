"""Command line: ``python -m emulator --config FILE [--port N] [--host H] [--data-dir DIR]``.

Prints two lines to stdout, the connection string (tools parse line 1) and the path of the
emulator's TLS certificate (for ``ServiceBusAdministrationClient``'s ``connection_verify``;
HTTPS shares the AMQP port), then serves until SIGTERM or SIGINT and exits 0. Logs go to
stderr. Exit codes: 0 clean stop, 1 could not start or the reactor failed, 2 bad arguments
or configuration (one readable line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

from emulator.config import ConfigError, load_config
from emulator.runtime import DEFAULT_KEY, DEFAULT_KEY_NAME, Emulator

__all__ = ["main"]

_PROG = "servicebus-emulator"


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_PROG,
        description="Local Azure Service Bus emulator (AMQP 1.0: queues, topics, subscriptions).",
    )
    parser.add_argument(
        "--config", required=True, help="Config.json in the official emulator's format"
    )
    parser.add_argument(
        "--port", type=int, default=5672, help="TCP port (0 = pick a free one; default 5672)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="IPv4 address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--key-name", default=DEFAULT_KEY_NAME, help="SharedAccessKeyName")
    parser.add_argument("--key", default=DEFAULT_KEY, help="SharedAccessKey")
    parser.add_argument(
        "--data-dir",
        help="keep queues, topics and subscriptions in DIR (SQLite) so they survive restarts "
        "and crashes, with the TLS certificate; default: in memory",
    )
    parser.add_argument(
        "--durability",
        choices=["full", "normal"],
        default="full",
        help="with --data-dir: fsync every commit (full, default) or not (normal: "
        "survives a killed process, not a power loss)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (default INFO)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGTERM/SIGINT. Returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 0 <= args.port <= 65535:
        print(f"{_PROG}: error: --port must be 0..65535", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{_PROG}: error: --config {exc}", file=sys.stderr)
        return 2

    emulator = Emulator(
        config,
        host=args.host,
        port=args.port,
        key_name=args.key_name,
        key=args.key,
        data_dir=args.data_dir,
        durability=args.durability,
    )
    try:
        emulator.start()
    except sqlite3.Error as exc:
        print(f"{_PROG}: error: --data-dir {args.data_dir}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"cannot listen on {args.host}:{args.port} (--host, --port)"
        if args.data_dir and exc.filename and str(args.data_dir) in str(exc.filename):
            where = f"--data-dir {args.data_dir}"
        # strerror, not str(exc): "[Errno 98] ..." means nothing to an operator.
        print(f"{_PROG}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(emulator.connection_string, flush=True)
    print(emulator.ca_file, flush=True)

    while not stop.wait(0.2):
        if emulator.wait(0):
            break
    emulator.stop()
    if emulator.failure is not None:
        return 1
    logging.getLogger(__name__).info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
