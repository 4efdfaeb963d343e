"""Small line charts drawn as SVG on the server (no chart library, no script): each chart
is a few polylines in a fixed view box, filled into ``templates/_chart.html``.

Hand-written because the figures are a handful of points per line and an SVG polyline is
the whole of it; a chart library would add a script (or a dependency) to every page.
"""

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 320
HEIGHT = 90
_PAD = 4


@dataclass(frozen=True)
class Series:
    """One line: its label, CSS class (colour), SVG points and latest value."""

    label: str
    css: str
    points: str
    last: float


@dataclass(frozen=True)
class Chart:
    """A chart's title, lines and the value at the top of its scale."""

    title: str
    series: list[Series]
    top: float
    width: int = WIDTH
    height: int = HEIGHT


def line_chart(title: str, lines: Sequence[tuple[str, str, Sequence[float]]]) -> Chart:
    """A chart of ``lines`` (label, CSS class, values oldest first), scaled to the largest
    value (at least 1) and spread over the same width."""
    longest = max((len(values) for _, _, values in lines), default=0)
    top = max([1.0, *(max(values, default=0.0) for _, _, values in lines)])
    series = []
    for label, css, values in lines:
        series.append(
            Series(label, css, _points(values, longest, top), values[-1] if values else 0)
        )
    return Chart(title, series, top)


def _points(values: Sequence[float], longest: int, top: float) -> str:
    if not values:
        return ""
    step = (WIDTH - 2 * _PAD) / max(longest - 1, 1)
    offset = longest - len(values)  # right-align shorter lines (same "now")
    plotted = []
    for index, value in enumerate(values):
        x = _PAD + (index + offset) * step
        y = HEIGHT - _PAD - (HEIGHT - 2 * _PAD) * (value / top)
        plotted.append(f"{x:.1f},{y:.1f}")
    if len(plotted) == 1:  # one sample: a short flat line so it shows
        plotted.append(f"{WIDTH - _PAD:.1f},{plotted[0].split(',')[1]}")
    return " ".join(plotted)
