"""One module per scenario; each has ``steps(settings)`` and ``async run(ctx)``."""
