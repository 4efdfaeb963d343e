"""``python -m tools.demo --keep-running`` waits after the summary until Ctrl-C or SIGTERM,
then stops everything as without it."""

import os
import signal
import threading

import pytest

from tools.demo import wait_for_stop_signal


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_waits_until_the_signal_and_restores_the_handlers(number: signal.Signals) -> None:
    before = signal.getsignal(number)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), number))
    timer.start()
    try:
        wait_for_stop_signal()  # returns instead of raising KeyboardInterrupt or exiting
    finally:
        timer.cancel()
    assert signal.getsignal(number) == before
