"""Compare two benchmark results: ``python -m bench.compare BEFORE.json AFTER.json [OUT.md]``.

Prints (or writes) a Markdown table of every target and of the headline figures of each
scenario both runs have, e.g. to show what a patch changed. Each ``results.json`` comes
from ``python -m bench`` (``--out`` picks where).
"""

import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.report.cells import md_table

Doc = dict[str, Any]
DASH = "\u2013"


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return DASH
    return f"{value:,.{digits}f}"


def _median(doc: Doc, *path: str) -> float:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    if isinstance(node, dict):
        value = node.get("median", math.nan)
        return float(value) if isinstance(value, int | float) else math.nan
    return float(node) if isinstance(node, int | float) else math.nan


def _headlines(doc: Doc) -> list[tuple[str, float, int]]:
    """(label, value, digits) of the figures worth comparing."""
    rows: list[tuple[str, float, int]] = []
    scenarios = doc.get("scenarios", {})
    accept = scenarios.get("accept", {})
    for name, variant in accept.get("variants", {}).items():
        for c, s in variant.get("by_concurrency", {}).items():
            rows.append((f"accept {name} c={c}: req/s", _median(s, "rate"), 0))
            rows.append((f"accept {name} c={c}: p99 ms", _median(s, "p99_ms"), 0))
    for name, variant in scenarios.get("publish", {}).get("variants", {}).items():
        rows.append((f"publish {name}: msg/s", _median(variant, "rate"), 0))
    consume = scenarios.get("consume", {})
    for name, variant in consume.get("variants", {}).items():
        rows.append((f"consume {name}: msg/s", _median(variant, "rate"), 0))
    for c, variant in consume.get("io", {}).items():
        rows.append((f"consume I/O c={c}: msg/s", _median(variant, "rate"), 0))
    e2e = scenarios.get("e2e", {})
    for name, system in e2e.get("systems", {}).items():
        rows.append(
            (f"e2e {name}: highest sustained events/s", system["highest_sustained_rate"], 0)
        )
        for fraction, result in system.get("fractions", {}).items():
            label = f"e2e {name} at {float(fraction) * 100:.0f} %"
            rows.append((f"{label}: p50 ms", _median(result, "p50_ms"), 0))
            rows.append((f"{label}: p99 ms", _median(result, "p99_ms"), 0))
        if "max_ms" in system.get("target_rate", {}):
            rate = system["target_rate"]["rate"]
            rows.append(
                (f"e2e {name} at {rate}/s: max ms", system["target_rate"]["max_ms"]["max"], 0)
            )
    # Results written before the systems were compared side by side.
    for rate, result in e2e.get("rates", {}).items():
        rows.append((f"e2e {rate}/s: handled/s", _median(result, "processed_rate"), 0))
        rows.append((f"e2e {rate}/s: p50 ms", _median(result, "p50_ms"), 0))
        rows.append((f"e2e {rate}/s: p99 ms", _median(result, "p99_ms"), 0))
    if "highest_sustained_rate" in e2e:
        rows.append(("e2e highest sustained events/s", float(e2e["highest_sustained_rate"]), 0))
    return rows


def _target_value(target: Doc) -> str:
    value = target["value"]
    if target["unit"] == "x":
        return DASH if math.isnan(value) else f"{value:.2f}\u00d7"
    if target["unit"] == "":
        return f"{value * 100:.0f} %"
    return f"{_num(value)} {target['unit']}"


def compare(before: Doc, after: Doc) -> str:
    """The Markdown comparison of two result documents."""
    intro = (
        f"Before: {before['machine']['date']} ({before['mode']}, git {before['machine']['git']}); "
        f"after: {after['machine']['date']} ({after['mode']}, git {after['machine']['git']})."
    )
    earlier = {t["name"]: t for t in before.get("targets", [])}
    targets = []
    for t in after.get("targets", []):
        if t.get("pending"):
            targets.append([t["name"], DASH, DASH, t["goal_text"], t["detail"]])
            continue
        old = earlier.get(t["name"])
        goal = _target_value({**t, "value": t["target"]})
        targets.append(
            [
                t["name"],
                _target_value(old) if old else DASH,
                _target_value(t),
                goal,
                "yes" if t["met"] else "no",
            ]
        )
    figures = []
    old_rows = {label: value for label, value, _ in _headlines(before)}
    for label, value, digits in _headlines(after):
        old_value = old_rows.get(label, math.nan)
        change = (
            f"{value / old_value:.2f}\u00d7"
            if old_value and not math.isnan(old_value) and not math.isnan(value)
            else DASH
        )
        figures.append([label, _num(old_value, digits), _num(value, digits), change])
    target_header = ["target", "before", "after", "goal (>=, or <= for latency)", "met after"]
    figure_header = ["figure (median)", "before", "after", "change"]
    return (
        "\n".join(
            [intro, "", md_table(target_header, targets), "", md_table(figure_header, figures)]
        )
        + "\n"
    )


def _read(path: str) -> Doc:
    data: Doc = json.loads(Path(path).read_text())
    return data


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = compare(_read(argv[0]), _read(argv[1]))
    if len(argv) > 2:
        Path(argv[2]).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
