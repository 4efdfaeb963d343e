"""``python -m contracts``: see :mod:`contracts.cli`."""

from contracts.cli import main

if __name__ == "__main__":
    main()
