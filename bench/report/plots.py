"""PNG plots of each scenario (matplotlib, Agg backend: no display needed)."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from bench.report.cells import Doc, num

COLORS = {
    "outbox-sqlite": "#1f77b4",
    "outbox-sqlite-otel": "#2ca02c",
    "outbox-postgres": "#17becf",
    "bare": "#7f7f7f",
    "direct": "#9467bd",
    "celery": "#8c564b",
    "arq": "#e377c2",
    "tutorial": "#d62728",
    "relay-sqlite": "#1f77b4",
    "relay-postgres": "#17becf",
    "raw-sdk": "#7f7f7f",
    "raw-loop": "#7f7f7f",
    "consumer-noop": "#1f77b4",
    "consumer-noop-wide": "#17becf",
    "consumer-noop-otel": "#2ca02c",
    "ours": "#1f77b4",
    "ours-otel": "#2ca02c",
}


def _err(summary: Doc) -> list[float]:
    return [summary["median"] - summary["min"], summary["max"] - summary["median"]]


def _save(fig: Any, path: Path, stamp: str) -> None:
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.text(0.005, 0.005, stamp, fontsize=7, color="#555555", ha="left", va="bottom")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stamp(doc: Doc) -> str:
    """One line of machine facts printed on every plot."""
    m = doc["machine"]
    packages = m["packages"]
    return (
        f"{m['date']} | {m['cpu_count']} CPU {m['cpu_model']}, {m['memory_gib']} GiB | "
        f"{m['python']} | azure-servicebus {packages.get('azure-servicebus')}, "
        f"fastapi {packages.get('fastapi')}, SQLite {m['sqlite']}, PostgreSQL {m['postgresql']} | "
        f"git {m['git']} | {doc['mode']} run"
    )


def _bars(
    ax: Axes,
    labels: list[str],
    summaries: list[Doc],
    colors: list[str],
    ylabel: str,
    log: bool = False,
) -> None:
    medians = [s["median"] for s in summaries]
    errors = [[e[0] for e in map(_err, summaries)], [e[1] for e in map(_err, summaries)]]
    ax.bar(labels, medians, yerr=errors, color=colors, capsize=4)
    for index, value in enumerate(medians):
        ax.annotate(num(value), (index, value), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=15)


def plot_accept(result: Doc, path: Path, stamp: str) -> None:
    variants = result["variants"]
    levels = [str(c) for c in result["settings"]["concurrency"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / (len(variants) + 1)
    for index, (name, variant) in enumerate(variants.items()):
        xs = [i + index * width for i in range(len(levels))]
        rates = [variant["by_concurrency"][c]["rate"] for c in levels]
        left.bar(
            xs,
            [r["median"] for r in rates],
            width,
            yerr=list(zip(*[_err(r) for r in rates], strict=True)),
            label=variant["label"],
            color=COLORS[name],
            capsize=3,
        )
        p99 = [variant["by_concurrency"][c]["p99_ms"]["median"] for c in levels]
        right.bar(xs, p99, width, label=name, color=COLORS[name])
    for ax in (left, right):
        ax.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(levels))])
        ax.set_xticklabels([f"concurrency {c}" for c in levels])
        ax.set_yscale("log")
    left.set_ylabel("requests/s (log)")
    left.set_title("Accept path throughput (median, min-max)")
    # Below the axes: inside, "best" still landed on the bars of one concurrency level.
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=2)
    right.set_ylabel("p99 latency, ms (log)")
    right.set_title("Accept path p99 latency")
    _save(fig, path, stamp)


def plot_publish(result: Doc, path: Path, stamp: str) -> None:
    variants = result["variants"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _bars(
        ax,
        [v["label"] for v in variants.values()],
        [v["rate"] for v in variants.values()],
        [COLORS[n] for n in variants],
        "messages/s",
    )
    ax.set_title(f"Publishing {result['settings']['events']:,} events (median, min-max)")
    _save(fig, path, stamp)


def plot_consume(result: Doc, path: Path, stamp: str) -> None:
    variants = result["variants"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    _bars(
        left,
        list(variants),
        [v["rate"] for v in variants.values()],
        [COLORS[n] for n in variants],
        "messages/s",
    )
    left.set_title("No-op handler vs raw SDK loop")
    levels = sorted(int(c) for c in result["io"])
    io = [result["io"][str(c)] for c in levels]
    best_noop = max(
        v["rate"]["median"]
        for n, v in variants.items()
        if n != "raw-loop" and not n.endswith("-otel")
    )
    ideal = [min(c / result["settings"]["handler_seconds"], best_noop) for c in levels]
    right.plot(levels, ideal, "--", color="#7f7f7f", label="ideal: c / 20 ms, capped by no-op rate")
    right.errorbar(
        levels,
        [s["rate"]["median"] for s in io],
        yerr=list(zip(*[_err(s["rate"]) for s in io], strict=True)),
        marker="o",
        capsize=4,
        label="consumer, 20 ms handler",
    )
    for c, s in zip(levels, io, strict=True):
        right.annotate(
            f"{s['efficiency']['median'] * 100:.0f} %",
            (c, s["rate"]["median"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
        )
    right.set_xscale("log", base=2)
    right.set_xticks(levels)
    right.set_xticklabels([str(c) for c in levels])
    right.set_xlabel("handler concurrency")
    right.set_ylabel("messages/s")
    right.set_title("I/O-bound handler scaling (labels: efficiency)")
    right.legend(fontsize=8)
    _save(fig, path, stamp)


def plot_e2e(result: Doc, path: Path, stamp: str) -> None:
    if "systems" not in result:  # a results.json from before the systems side by side
        return
    systems = result["systems"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name, system in systems.items():
        fractions = sorted(system["fractions"], key=float)
        if not fractions:
            continue
        xs = [float(f) * 100 for f in fractions]
        left.plot(
            xs,
            [system["fractions"][f]["p99_ms"]["median"] for f in fractions],
            "o-",
            color=COLORS.get(name),
            label=f"{name} p99",
        )
        left.plot(
            xs,
            [system["fractions"][f]["p50_ms"]["median"] for f in fractions],
            "o:",
            color=COLORS.get(name),
            label=f"{name} p50",
        )
    left.axhline(50, color="#d62728", linestyle=":", label="target p99 at 50 %: 50 ms")
    left.set_yscale("log")
    left.set_xlim(0, 100)
    left.set_xlabel("% of the system's own highest sustained rate")
    left.set_ylabel("accepted -> handled, ms (log)")
    left.set_title("End-to-end latency at fractions of capacity")
    left.legend(fontsize=7, ncols=2)
    names = list(systems)
    highest = [systems[n]["highest_sustained_rate"] for n in names]
    right.bar(names, highest, color=[COLORS.get(n, "#7f7f7f") for n in names])
    for index, value in enumerate(highest):
        right.annotate(num(value), (index, value), ha="center", va="bottom", fontsize=8)
    right.set_ylabel("events/s")
    right.set_title("Highest sustained rate (open loop)")
    _save(fig, path, stamp)


def plot_emulator(result: Doc, path: Path, stamp: str) -> None:
    t = result["throughput"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _bars(
        left,
        ["batched send", "receive + complete"],
        [t["send_rate"], t["receive_rate"]],
        ["#1f77b4", "#2ca02c"],
        "messages/s",
    )
    left.set_title(f"Emulator through the SDK ({result['settings']['messages']:,} messages)")
    _bars(
        right,
        ["at rest", f"{result['settings']['messages']:,} stored", "drained"],
        [t["rss_at_rest_mib"], t["rss_with_messages_mib"], t["rss_after_drain_mib"]],
        ["#7f7f7f", "#ff7f0e", "#2ca02c"],
        "RSS, MiB",
    )
    right.set_title("Emulator memory")
    _save(fig, path, stamp)


PLOTS = {
    "accept": plot_accept,
    "publish": plot_publish,
    "consume": plot_consume,
    "e2e": plot_e2e,
    "emulator": plot_emulator,
}
