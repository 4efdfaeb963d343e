"""Cells of the report: numbers, spreads, ratios and Markdown tables (``tabulate``)."""

import math
from typing import Any

from tabulate import tabulate

Doc = dict[str, Any]
DASH = "\u2013"
TIMES = "\u00d7"


def num(value: float, digits: int = 0) -> str:
    """``1,234`` (``digits`` decimals); a dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:,.{digits}f}"


def spread(summary: Doc | None, digits: int = 0) -> str:
    """``median (min-max)``; the median alone for a single run."""
    if not summary:
        return DASH
    median = num(summary["median"], digits)
    if summary.get("runs") is not None and len(summary["runs"]) > 1:
        low, high = num(summary["min"], digits), num(summary["max"], digits)
        return f"{median} ({low}{DASH}{high})"
    return median


def ratio(value: float) -> str:
    """The ratio with two decimals and a multiplication sign; a dash for a missing value."""
    return DASH if math.isnan(value) else f"{value:.2f}{TIMES}"


def cpu_cell(by_process: dict[str, float]) -> str:
    """``producer 95, emulator 40``: percent of one core per process."""
    return ", ".join(
        f"{name} {value:.0f}" for name, value in by_process.items() if not math.isnan(value)
    )


def percent(summary: Doc) -> Doc:
    """A summary of fractions (0-1) as percentages."""
    return {k: (x * 100 if isinstance(x, float) else x) for k, x in summary.items()}


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table; cells are kept as given (no number parsing)."""
    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True)
