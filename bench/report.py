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
        right.annotate(_num(value), (index, value), ha="center", va="bottom", fontsize=8)
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
        if t.get("pending"):
            rows.append([t["name"], DASH, t["goal_text"], DASH, t["detail"]])
            continue
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


def _accept_ratios(r: Doc) -> str:
    """Producer variants (rows) over every baseline (columns), per concurrency level:
    ``median ratio (per-repeat ratios)``."""
    cells: dict[tuple[str, str], dict[str, str]] = {}
    columns: list[str] = []
    for name, v in r["ratios"].items():
        pair, _, level = name.rpartition(" c=")
        mine, _, other = pair.partition("/")
        if other not in columns:
            columns.append(other)
        paired = ", ".join(_ratio(p) for p in v["paired"])
        cell = _ratio(v["value"]) + (f" ({paired})" if len(v["paired"]) > 1 else "")
        cells.setdefault((mine, level), {})[other] = cell
    rows = [
        [f"{mine}, c={level}", *(row.get(c, "") for c in columns)]
        for (mine, level), row in cells.items()
    ]
    return _table(
        ["ratio of requests/s (same run; per repeat)", *(f"/ {c}" for c in columns)], rows
    )


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
                    _num(s.get("server_cpu_ms_per_request", {}).get("median", math.nan), 2),
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
            "server CPU ms per request",
            "CPU % of one core",
        ],
        rows,
    )
    ratios = _accept_ratios(r)
    exported = [
        f"{variant['label']}, c={c}: "
        + ", ".join(f"{signal} {n}" for signal, n in run["otlp_requests"].items())
        for variant in r["variants"].values()
        for c, s in variant["by_concurrency"].items()
        for run in s["runs"][-1:]
        if "otlp_requests" in run
    ]
    if exported:
        table += (
            "\n\nOTLP export requests the sink had received by the end of the last repeat "
            "(since the producer started): " + "; ".join(exported) + "."
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


def _e2e_row(label: str, v: Doc) -> list[str]:
    return [
        label,
        _spread(v["offered_rate"]),
        _spread(v["http_rate"]),
        _spread(v["processed_rate"]),
        _spread(v["p50_ms"]),
        _spread(v["p95_ms"]),
        _spread(v["p99_ms"]),
        _spread(v["max_ms"]),
        v["sustained_runs"],
    ]


def _e2e(r: Doc) -> str:
    if "systems" not in r:
        return "Results in an older format; re-run `python -m bench --only e2e`.\n"
    s = r["settings"]
    capacity = _table(
        ["system", "highest sustained events/s", "lowest failing", "loads tried (events/s)"],
        [
            [
                v["label"],
                _num(v["highest_sustained_rate"]),
                _num(v["lowest_failing_rate"]) if v["lowest_failing_rate"] else DASH,
                ", ".join(
                    f"{p['offered_rate']:.0f}{'' if p['sustained'] else ' ✗'}" for p in v["search"]
                ),
            ]
            for v in r["systems"].values()
        ],
    )
    rows = []
    for name, v in r["systems"].items():
        for fraction, f in sorted(v["fractions"].items(), key=lambda kv: float(kv[0])):
            rows.append(_e2e_row(f"{name} at {float(fraction) * 100:.0f} %", f))
        if "runs" in v.get("target_rate", {}):
            rows.append(_e2e_row(f"{name} at {v['target_rate']['rate']}/s", v["target_rate"]))
    header = ["system, load", "offered/s", "accepted/s", "handled/s", "p50 ms", "p95 ms"]
    header += ["p99 ms", "max ms", "sustained"]
    latency = _table(header, rows)
    ratios = _table(
        ["ratio (same run)", "value"],
        [[name, _ratio(v["value"])] for name, v in r["ratios"].items()],
    )
    cpu_rows = []
    for name, v in r["systems"].items():
        half = v["fractions"].get("0.5")
        if half:
            first = half["runs"][0]
            cpu_rows.append([name, _num(first["offered_rate"]), _cpu(first["cpu_percent"])])
    cpu = _table(["system at 50 %", "events/s", "CPU % of one core"], cpu_rows)
    return (
        f"Open loop, {s['seconds']:g} s measured per load after {s['warmup']:g} s of load; "
        f"search from {s['start_rate']} events/s (x{s['growth']:g} while sustained, then "
        f"{s['search_steps']} bisections); fractions of each system's own highest sustained "
        f"rate, {s['repeats']} session(s) for ours, 1 for the baselines; "
        f"{s['target_runs']} loads at {s['target_rate']} events/s with shipped telemetry.\n\n"
        f"{capacity}\n\n{latency}\n\n{ratios}\n\n{cpu}\n\n![end to end](e2e.png)\n"
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
  generator (`python -m bench.loadgen`). PostgreSQL is the machine's server; each
  PostgreSQL run gets a fresh database, dropped afterwards. Redis is the machine's server
  (`BENCH_REDIS_URL`, database 15); each Celery or ARQ run gets its own queue, deleted
  afterwards.
* **Telemetry.** Variants named *telemetry off* run with `*_TELEMETRY_EXPORTER=none` and
  `WARNING` logs. Variants named *shipped telemetry* (`-otel`) run as a deployment does:
  `*_ENVIRONMENT=production`, exporter `auto`, the default sampler and log level, and
  `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at `python -m bench.otlp_sink`, a loopback OTLP/HTTP
  receiver that answers every export `200` without decoding it (its CPU is in the tables
  as `otlp-sink`; a real collector would run elsewhere).
* **Baselines.** *Direct send*: a long-lived `ServiceBusClient`, one awaited
  `send_messages` per request before the `202`, no outbox (an accepted event is lost if
  the send fails or the process dies). Senders are pooled (a request borrows an open
  sender; 32 are opened at start-up, more if more are in flight): concurrent first sends on one
  unopened aio sender fail (`'NoneType' object has no attribute 'create_sender_link'`),
  and one sender behind a lock was slower. *Celery*: `task.delay()` in the endpoint, Redis
  broker, the worker at Celery's defaults (prefork, one child per core). *ARQ*:
  `enqueue_job` on one pool; its worker at ARQ's defaults (10 jobs at once, the queue polled
  every 0.5 s, which sets its latency floor). Their jobs validate the event and note the
  time; they write nothing durable, where our consumer appends to its audit store. In the
  accept path no worker runs (the enqueue cost alone).
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
* **Accept path.** Ratios compare HTTP rates (202s per second); "server CPU ms per
  request" is the service process's CPU over the window divided by the requests
  answered. "on the queue/s during load" counts messages the service had sent to Service
  Bus during the run (`/v1/stats` of the producer, `/stats` of the tutorial app): the
  tutorial pattern answers 202 before its background task has even connected, its sends
  pile up as tasks in memory (lost if the process stops); the target notes say how many
  were still unsent 10 s later.
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
  envelope time stamped by the producer); for Celery and ARQ the job's finish - the
  endpoint's clock before enqueueing. Sustained = ≥ 97 % of offered accepted and handled
  within the window, and everything handled ≤ 2 s after the load. Several loads run on one
  started system (a *session*), each once the previous one is handled; the highest
  sustained rate is searched per system, and latency is reported at fractions of it, so
  the figures keep their meaning on a slower or busier machine.
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
