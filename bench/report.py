"""Writing results: ``results.json``, ``README.md`` (tables, ratios, targets) and PNG plots."""

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Doc = dict[str, Any]
DASH = "\u2013"
TIMES = "\u00d7"
COLORS = {
    "outbox-sqlite": "#1f77b4",
    "outbox-postgres": "#17becf",
    "bare": "#7f7f7f",
    "tutorial": "#d62728",
    "relay-sqlite": "#1f77b4",
    "relay-postgres": "#17becf",
    "raw-sdk": "#7f7f7f",
    "raw-loop": "#7f7f7f",
    "consumer-noop": "#1f77b4",
    "consumer-noop-wide": "#17becf",
}


# --- formatting -------------------------------------------------------------------------


def _num(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:,.{digits}f}"


def _spread(summary: Doc | None, digits: int = 0) -> str:
    """``median (min-max)``."""
    if not summary:
        return DASH
    median = _num(summary["median"], digits)
    if summary.get("runs") is not None and len(summary["runs"]) > 1:
        low, high = _num(summary["min"], digits), _num(summary["max"], digits)
        return f"{median} ({low}{DASH}{high})"
    return median


def _ratio(value: float) -> str:
    return DASH if math.isnan(value) else f"{value:.2f}{TIMES}"


def _cpu(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in cpu.items() if not math.isnan(value))


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _err(summary: Doc) -> list[float]:
    return [summary["median"] - summary["min"], summary["max"] - summary["median"]]


# --- plots ------------------------------------------------------------------------------


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
        ax.annotate(_num(value), (index, value), ha="center", va="bottom", fontsize=8)
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
    best_noop = max(v["rate"]["median"] for n, v in variants.items() if n != "raw-loop")
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
    rates = sorted(result["rates"].values(), key=lambda r: r["offered_rate"])
    xs = [r["offered_rate"] for r in rates]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
        left.plot(xs, [r[key]["median"] for r in rates], style, label=key.split("_")[0])
    left.axhline(100, color="#d62728", linestyle=":", label="target p99 at 300/s: 100 ms")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered events/s")
    left.set_ylabel("accepted -> handled, ms (log)")
    left.set_title("End-to-end latency")
    left.legend(fontsize=8)
    right.plot(xs, xs, "--", color="#7f7f7f", label="offered")
    right.errorbar(
        xs,
        [r["processed_rate"]["median"] for r in rates],
        yerr=list(zip(*[_err(r["processed_rate"]) for r in rates], strict=True)),
        marker="o",
        capsize=4,
        label="handled by the consumer",
    )
    for r in rates:
        right.annotate(
            "ok" if r["sustained"] else "backlog",
            (r["offered_rate"], r["processed_rate"]["median"]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
        )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered events/s")
    right.set_ylabel("events/s during the window")
    right.set_title("Throughput: handled vs offered")
    right.legend(fontsize=8)
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


# --- markdown ---------------------------------------------------------------------------


def _machine(doc: Doc) -> str:
    m = doc["machine"]
    rows = [
        ["date (UTC)", m["date"]],
        ["CPU", f"{m['cpu_model']}, {m['cpu_count']} logical ({m['cpu_count_physical']} physical)"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["load average at start", ", ".join(str(x) for x in m["load_average_at_start"])],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["SQLite / PostgreSQL", f"{m['sqlite']} / {m['postgresql']}"],
        ["git", m["git"]],
        ["packages", ", ".join(f"{k} {v}" for k, v in m["packages"].items())],
        ["mode", f"{doc['mode']} ({doc['duration_s'] / 60:.1f} min)"],
    ]
    return _table(["", ""], rows)


def _targets(doc: Doc) -> str:
    rows = []
    for t in doc["targets"]:
        unit = t["unit"]
        if unit == "x":
            value, goal = _ratio(t["value"]), f"{t['comparison']} {t['target']:g}{TIMES}"
        elif unit == "":
            value, goal = (
                f"{t['value'] * 100:.0f} %",
                f"{t['comparison']} {t['target'] * 100:.0f} %",
            )
        else:
            value, goal = f"{_num(t['value'])} {unit}", f"{t['comparison']} {t['target']:g} {unit}"
        rows.append([t["name"], value, goal, "✅" if t["met"] else "❌", t["detail"]])
    return _table(["target", "measured", "goal", "met", "note"], rows)


def _accept(r: Doc) -> str:
    rows = []
    for variant in r["variants"].values():
        for c, s in variant["by_concurrency"].items():
            rows.append(
                [
                    variant["label"],
                    c,
                    _spread(s["rate"]),
                    _num(s["p50_ms"]["median"], 1),
                    _num(s["p95_ms"]["median"], 1),
                    _num(s["p99_ms"]["median"], 1),
                    _spread(s.get("publish_rate")),
                    _spread(s.get("commit_group_mean"), 1),
                    _cpu(s["cpu_percent"]),
                ]
            )
    table = _table(
        [
            "variant",
            "concurrency",
            "requests/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "on the queue/s during load",
            "events per commit group",
            "CPU % of one core",
        ],
        rows,
    )
    ratios = _table(
        ["ratio (same run)", "value", "per repeat"],
        [
            [name, _ratio(v["value"]), ", ".join(_ratio(p) for p in v["paired"])]
            for name, v in r["ratios"].items()
        ],
    )
    ceiling = ", ".join(
        f"{_num(v['rate'])} req/s at concurrency {c} (its CPU {v['loadgen_cpu_percent']:.0f} %)"
        for c, v in r["loadgen_ceiling"].items()
    )
    s = r["settings"]
    return (
        f"Closed loop, {s['seconds']:g} s measured after {s['warmup']:g} s warm-up, "
        f"{s['repeats']} repeat(s); a fresh process (and emulator, database) per repeat.\n\n"
        f"{table}\n\n{ratios}\n\n"
        f"Load generator ceiling (same generator against a null HTTP server): {ceiling}.\n\n"
        "![accept path](accept.png)\n"
    )


def _publish(r: Doc) -> str:
    rows = []
    for variant in r["variants"].values():
        extra = ""
        first = variant["runs"][0] if variant["runs"] else {}
        if "wall_rate_from_spawn" in first:
            extra = _num(
                sum(x["wall_rate_from_spawn"] for x in variant["runs"]) / len(variant["runs"])
            )
        rows.append(
            [variant["label"], _spread(variant["rate"]), extra, _cpu(variant["cpu_percent"])]
        )
    table = _table(["variant", "messages/s", "incl. producer start-up", "CPU % of one core"], rows)
    ratios = _table(
        ["ratio (same run)", "value", "per repeat"],
        [
            [name, _ratio(v["value"]), ", ".join(_ratio(p) for p in v["paired"])]
            for name, v in r["ratios"].items()
        ],
    )
    events = r["settings"]["events"]
    return f"{events:,} events per run.\n\n{table}\n\n{ratios}\n\n![publish](publish.png)\n"


def _consume(r: Doc) -> str:
    rows = [
        [v["label"], _spread(v["rate"]), _cpu(v["cpu_percent"])] for v in r["variants"].values()
    ]
    table = _table(["variant", "messages/s", "CPU % of one core"], rows)
    ratios = _table(
        ["ratio (same run)", "value", "per repeat"],
        [
            [name, _ratio(v["value"]), ", ".join(_ratio(p) for p in v["paired"])]
            for name, v in r["ratios"].items()
        ],
    )
    io_rows = [
        [
            c,
            _spread(v["rate"]),
            _num(v["ideal_rate"]["median"]),
            _spread(
                {k: x * 100 if isinstance(x, float) else x for k, x in v["efficiency"].items()}
            ),
            _cpu(v["cpu_percent"]),
        ]
        for c, v in r["io"].items()
    ]
    io = _table(
        ["concurrency", "messages/s", "ideal", "efficiency %", "CPU % of one core"], io_rows
    )
    return (
        f"{r['settings']['messages']:,} messages per no-op run.\n\n{table}\n\n{ratios}\n\n"
        f"I/O-bound handler (`await asyncio.sleep(0.020)`), ideal = min(c / 0.020 s, best "
        f"no-op rate):\n\n{io}\n\n![consume](consume.png)\n"
    )


def _percent(summary: Doc) -> Doc:
    return {k: (x * 100 if isinstance(x, float) else x) for k, x in summary.items()}


def _e2e(r: Doc) -> str:
    rows = []
    for key, v in r["rates"].items():
        rows.append(
            [
                key,
                _spread(v["http_rate"]),
                _spread(v["processed_rate"]),
                _spread(v["p50_ms"]),
                _spread(v["p95_ms"]),
                _spread(v["p99_ms"]),
                _spread(v["backlog_at_end"]),
                f"{'yes' if v['sustained'] else 'no'} ({v['sustained_runs']})",
            ]
        )
    table = _table(
        [
            "offered/s",
            "accepted/s",
            "handled/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "backlog at end",
            "sustained",
        ],
        rows,
    )
    high = r["lowest_failing_rate"]
    s = r["settings"]
    return (
        f"Open loop, {s['seconds']:g} s per run after {s['warmup']:g} s warm-up.\n\n{table}\n\n"
        f"**Highest sustained rate tested: {_num(r['highest_sustained_rate'])} events/s**"
        + (f" (lowest failing: {_num(high)} events/s)" if high else "")
        + ".\n\n![end to end](e2e.png)\n"
    )


def _emulator(r: Doc) -> str:
    st = r["startup"]
    t = r["throughput"]
    rows = [
        ["start-up: spawn -> connection string", f"{_spread(st['to_connection_string_s'], 2)} s"],
        ["start-up: spawn -> first message acknowledged", f"{_spread(st['to_first_send_s'], 2)} s"],
        ["RSS at rest", f"{_spread(st['rss_at_rest_mib'])} MiB"],
        ["batched send (SDK, full batches)", f"{_spread(t['send_rate'])} msg/s"],
        ["receive + complete (SDK, 100 per receive)", f"{_spread(t['receive_rate'])} msg/s"],
        [
            "emulator CPU during send / receive",
            f"{_num(t['send_emulator_cpu_percent']['median'])} % / "
            f"{_num(t['receive_emulator_cpu_percent']['median'])} %",
        ],
        [
            f"RSS with {r['settings']['messages']:,} messages stored",
            f"{_spread(t['rss_with_messages_mib'])} MiB",
        ],
        ["RSS after receiving them all", f"{_spread(t['rss_after_drain_mib'])} MiB"],
        ["memory per stored message", f"{_num(r['per_message_kib'], 2)} KiB"],
    ]
    return _table(["", ""], rows) + "\n\n![emulator](emulator.png)\n"


METHOD = """\
## Method

* **Processes.** Every service under test runs as its own OS process, started by the
  benchmark: the emulator (`python -m emulator --config config/servicebus.json --port 0`,
  in-memory queues), `python -m producer`, `python -m consumer`, the baselines
  (`python -m bench.apps bare|tutorial`), the raw SDK clients (`python -m bench.sbtools`),
  the consumer runtime with benchmark handlers (`python -m bench.worker`) and the load
  generator (`python -m bench.loadgen`). Producer and consumer run with telemetry export
  off (`*_TELEMETRY_EXPORTER=none`) and `WARNING` logs. PostgreSQL is the machine's server;
  each PostgreSQL run gets a fresh database, dropped afterwards.
* **Load generator.** Raw HTTP/1.1 keep-alive connections on asyncio + uvloop with
  pre-built requests (realistic audit-event bodies from `tools.workload`, `X-API-Key`),
  responses read by `Content-Length`; no HTTP client library. Closed loop for the accept
  path (N connections, next request when the answer arrives; throughput counts answers
  completed in the measured window, latency is send -> last byte). Open loop for end to
  end (requests started on a fixed schedule whatever the answers; latency counted from the
  scheduled time, so a slow server cannot hide its queueing). It is shown not to be the
  bottleneck twice: against a null HTTP server it reaches the "load generator ceiling"
  (tens of thousands of requests/s), and its own CPU use during every run is in the
  tables (`loadgen`).
* **CPU columns** are percent of one core over the measured window (`psutil` CPU times of
  each process; `postgres` sums all of the server's processes, including other users').
  The machine has 2 cores shared by everything, so these show where the time goes.
* **Repeats.** Each configuration runs several times (fresh processes each time, variants
  interleaved so drift hits all alike); tables give the median and (min-max). Ratios are
  taken between medians of the same invocation, and per repeat ("per repeat").
* **Accept path.** Ratios compare HTTP rates (202s per second). "on the queue/s during
  load" counts messages the service had sent to Service Bus during the run (`/v1/stats`
  of the producer, `/stats` of the tutorial app): the tutorial pattern answers 202 before
  its background task has even connected, its sends pile up as tasks in memory (lost if
  the process stops); the target notes say how many were still unsent 10 s later.
  "events per commit group" is the producer's mean group commit over the run
  (`grouped_events / commit_groups` of `/v1/stats`): the outbox transaction, the send
  and the "published" update are paid once per group, so fewer events per group cost
  more CPU per request.
* **Publish.** Rate from the outbox rows' `finished_at` (first to last published batch),
  i.e. the relay alone; the raw SDK baseline sends prepared messages in batches filled to
  the SDK's limit (256 KiB) over one sender.
* **Consume.** Rates from the first handler call (first non-empty receive for the raw
  loop) to the last settlement. Efficiency = rate / min(concurrency / 20 ms, best no-op
  consumer rate).
* **End to end.** Latency = consumer `audit_events.recorded_at` - `accepted_at` (the
  envelope time stamped by the producer). Sustained = ≥ 97 % of offered accepted and
  handled within the window, and the consumer caught up ≤ 2 s after the load.
* Nothing here is a test: no assertion on time anywhere; the test suite never runs this.
"""


def markdown(doc: Doc) -> str:
    scenarios = doc["scenarios"]
    parts = [
        "# Benchmarks\n",
        "Generated by `python -m bench"
        + (" --quick" if doc["mode"] == "quick" else "")
        + "`; do not edit by hand (re-run it). "
        "Raw numbers: [results.json](results.json). Analysis of missed targets, profiles "
        "and proposed fixes: [findings.md](findings.md).\n",
        "## Machine\n",
        _machine(doc),
        "\n## Targets\n",
        _targets(doc),
    ]
    sections = [
        ("accept", "1. Accept path", _accept),
        ("publish", "2. Publish", _publish),
        ("consume", "3. Consume", _consume),
        ("e2e", "4. End to end", _e2e),
        ("emulator", "5. Emulator", _emulator),
    ]
    for key, title, render in sections:
        if key in scenarios:
            result = scenarios[key]
            parts.append(f"\n## {title}\n")
            if "error" in result:
                parts.append(f"Failed: `{result['error']}`\n")
            else:
                parts.append(render(result))
    parts.append("\n" + METHOD)
    return "\n".join(parts)


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
