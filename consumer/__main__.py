"""``python -m consumer``: the worker by default; see ``python -m consumer --help``."""

from consumer.cli import main

if __name__ == "__main__":
    main()
