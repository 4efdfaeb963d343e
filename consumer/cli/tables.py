"""Terminal tables that fit the console: one line per row, never wider than the terminal.

Rich shrinks every column of a too-wide table and drops some altogether; here the widths
are chosen explicitly instead: key columns (sequence numbers, reasons) are never cut,
flexible ones (ids, descriptions) share what is left and end in "…", optional ones are
left out first when even that does not fit. ``--json`` gives the full values.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.table import Table

_GAP = 3
"""Characters between two columns with ``box.SIMPLE_HEAD`` and ``pad_edge=False``."""


@dataclass(frozen=True)
class Column:
    """One column of a :func:`fitted_table`.

    Attributes:
        header: Column title.
        flexible: Cut with "…" to share the room left by the other columns.
        min_width: Narrowest a flexible column gets before optional columns are dropped
            (never narrower than its header).
        optional: Left out when the table would not fit otherwise (last ones first).
        justify: Cell alignment.
    """

    header: str
    flexible: bool = False
    min_width: int = 8
    optional: bool = False
    justify: Literal["left", "right"] = "left"


def fitted_table(
    title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> Table:
    """A table of ``rows`` (one ``str`` per column) at most ``width`` characters wide.

    Non-flexible columns are as wide as their longest value; if they alone exceed
    ``width``, the widest of them is cut too.
    """
    shown = list(range(len(columns)))
    natural = [max([len(columns[i].header), *(len(row[i]) for row in rows)]) for i in shown]

    def least(index: int) -> int:
        column = columns[index]
        if not column.flexible:
            return natural[index]
        return min(natural[index], max(column.min_width, len(column.header)))

    def needed(indexes: list[int]) -> int:
        return sum(least(i) for i in indexes) + _GAP * (len(indexes) - 1)

    for index in reversed(range(len(columns))):
        if needed(shown) <= width:
            break
        if columns[index].optional:
            shown.remove(index)
    widths = {i: least(i) for i in shown}
    room = width - needed(shown)
    flexible = [i for i in shown if columns[i].flexible]
    while room > 0 and (growing := [i for i in flexible if widths[i] < natural[i]]):
        share = max(1, room // len(growing))
        for i in growing:
            extra = min(share, natural[i] - widths[i], room)
            widths[i] += extra
            room -= extra
    while room < 0:  # the fixed columns alone are too wide: cut the widest
        widest = max(shown, key=lambda i: widths[i])
        cut = min(-room, widths[widest] - 1)
        widths[widest] -= cut
        room += cut
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        expand=False,
    )
    for i in shown:
        table.add_column(
            columns[i].header,
            width=widths[i],
            no_wrap=True,
            overflow="ellipsis",
            justify=columns[i].justify,
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
