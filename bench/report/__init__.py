"""Writing results: ``results.json``, ``README.md`` (tables, ratios, targets) and PNG plots.

:mod:`~bench.report.markdown` and :mod:`~bench.report.sections` write the Markdown (tables
by ``tabulate``), :mod:`~bench.report.plots` the figures, :mod:`~bench.report.cells` the
numbers both show.
"""

import json
from pathlib import Path

from bench.report.cells import Doc
from bench.report.markdown import markdown
from bench.report.plots import PLOTS, stamp

__all__ = ["PLOTS", "markdown", "stamp", "write"]


def write(doc: Doc, out: Path) -> list[Path]:
    """Write ``results.json``, the plots and ``README.md`` to ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    results = out / "results.json"
    results.write_text(json.dumps(doc, indent=1, default=str))
    written.append(results)
    for key, plot in PLOTS.items():
        result = doc["scenarios"].get(key)
        if result and "error" not in result:
            path = out / f"{key}.png"
            plot(result, path, stamp(doc))
            written.append(path)
    readme = out / "README.md"
    readme.write_text(markdown(doc))
    written.append(readme)
    return written
