"""A local Azure Service Bus emulator: an AMQP 1.0 server on python-qpid-proton.

The unmodified ``azure-servicebus`` SDK talks to it with a connection string such as
``Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true``.

Entry points: ``python -m emulator`` / ``servicebus-emulator`` (see ``emulator.__main__``),
:class:`emulator.runtime.Emulator`, :func:`emulator.testing.run_emulator` and the pytest
plugin :mod:`emulator.pytest_plugin` for tests, ``python -m emulator.bench`` to measure.
Queues live in memory, or in SQLite with ``--data-dir`` (:mod:`emulator.store`).
"""

__all__: list[str] = []
