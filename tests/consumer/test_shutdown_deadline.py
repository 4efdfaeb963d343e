"""The one shutdown deadline type both processes use (``common.shutdown``)."""

import pytest

from common.shutdown import MIN_CLOSE_TIME, ShutdownDeadline, split_reserves
from consumer.runtime.worker import ABANDON_RESERVE, CLOSE_RESERVE, ShutdownBudget


def test_the_deadline_is_fixed_at_the_first_start_and_closes_keep_their_minimum() -> None:
    now = [100.0]
    deadline = ShutdownDeadline(4, clock=lambda: now[0])
    assert deadline.at is None
    assert deadline.left() == 4
    deadline.start()
    now[0] += 1
    deadline.start()  # a second signal does not move it
    assert deadline.at == 104
    assert deadline.left() == 3
    now[0] += 3.8
    assert deadline.close_left() == MIN_CLOSE_TIME
    assert deadline.at == 104, "close_left does not move the deadline"
    assert deadline.keep_close_time() == pytest.approx(104.8 + MIN_CLOSE_TIME)
    assert deadline.left() == pytest.approx(MIN_CLOSE_TIME), "keep_close_time moves it"


@pytest.mark.parametrize("grace", [0.0, 0.4, 1.0, 3.0, 6.0, 25.0])
def test_reserves_shrink_together_to_half_the_grace_period(grace: float) -> None:
    abandon, close = split_reserves(grace, ABANDON_RESERVE, CLOSE_RESERVE)
    assert abandon + close == pytest.approx(min(ABANDON_RESERVE + CLOSE_RESERVE, grace / 2))
    assert abandon == close  # equal reserves stay equal
    budget = ShutdownBudget.for_grace(grace)
    assert budget.close == close
    assert budget.abandon == close + abandon
    if grace >= 6.0:
        assert (abandon, close) == (ABANDON_RESERVE, CLOSE_RESERVE)
