"""pytest plugin: a ``servicebus_emulator`` fixture backed by :func:`emulator.testing.run_emulator`.

Enable it with ``-p emulator.pytest_plugin``, ``pytest_plugins = ["emulator.pytest_plugin"]``
in the root ``conftest.py``, or by importing the fixture into a test module. Each test gets
its own emulator on an ephemeral port (start-up takes a few tens of milliseconds)::

    @pytest.mark.servicebus_config(queue_config("orders", LockDuration="PT5S"))
    async def test_orders(servicebus_emulator):
        async with ServiceBusClient.from_connection_string(
            servicebus_emulator.connection_string
        ) as client:
            ...

Without the marker the project's ``config/servicebus.json`` is used.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.testing import EmulatorHandle, run_emulator

__all__ = ["pytest_configure", "servicebus_emulator"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``servicebus_config`` marker."""
    config.addinivalue_line(
        "markers",
        "servicebus_config(config): Config.json-shaped dict or path for the servicebus_emulator "
        "fixture",
    )


@pytest.fixture
def servicebus_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorHandle]:
    """A running emulator for this test; see the module docstring."""
    marker = request.node.get_closest_marker("servicebus_config")
    config = marker.args[0] if marker is not None and marker.args else None
    with run_emulator(config) as handle:
        yield handle
