"""The Markdown section of each scenario: tables, ratios and its plot."""

import math

from bench.report.cells import DASH, Doc, cpu_cell, md_table, num, percent, ratio, spread


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
        paired = ", ".join(ratio(p) for p in v["paired"])
        cell = ratio(v["value"]) + (f" ({paired})" if len(v["paired"]) > 1 else "")
        cells.setdefault((mine, level), {})[other] = cell
    rows = [
        [f"{mine}, c={level}", *(row.get(c, "") for c in columns)]
        for (mine, level), row in cells.items()
    ]
    return md_table(
        ["ratio of requests/s (same run; per repeat)", *(f"/ {c}" for c in columns)], rows
    )


def accept(r: Doc) -> str:
    rows = []
    for variant in r["variants"].values():
        for c, s in variant["by_concurrency"].items():
            rows.append(
                [
                    variant["label"],
                    c,
                    spread(s["rate"]),
                    num(s["p50_ms"]["median"], 1),
                    num(s["p95_ms"]["median"], 1),
                    num(s["p99_ms"]["median"], 1),
                    spread(s.get("publish_rate")),
                    spread(s.get("commit_group_mean"), 1),
                    num(s.get("server_cpu_ms_per_request", {}).get("median", math.nan), 2),
                    cpu_cell(s["cpu_percent"]),
                ]
            )
    table = md_table(
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
        f"{num(v['rate'])} req/s at concurrency {c} (its CPU {v['loadgen_cpu_percent']:.0f} %)"
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


def publish(r: Doc) -> str:
    rows = []
    for variant in r["variants"].values():
        extra = ""
        first = variant["runs"][0] if variant["runs"] else {}
        if "wall_rate_from_spawn" in first:
            extra = num(
                sum(x["wall_rate_from_spawn"] for x in variant["runs"]) / len(variant["runs"])
            )
        rows.append(
            [variant["label"], spread(variant["rate"]), extra, cpu_cell(variant["cpu_percent"])]
        )
    table = md_table(
        ["variant", "messages/s", "incl. producer start-up", "CPU % of one core"], rows
    )
    ratios = md_table(
        ["ratio (same run)", "value", "per repeat"],
        [
            [name, ratio(v["value"]), ", ".join(ratio(p) for p in v["paired"])]
            for name, v in r["ratios"].items()
        ],
    )
    events = r["settings"]["events"]
    return f"{events:,} events per run.\n\n{table}\n\n{ratios}\n\n![publish](publish.png)\n"


def consume(r: Doc) -> str:
    rows = [
        [v["label"], spread(v["rate"]), cpu_cell(v["cpu_percent"])] for v in r["variants"].values()
    ]
    table = md_table(["variant", "messages/s", "CPU % of one core"], rows)
    ratios = md_table(
        ["ratio (same run)", "value", "per repeat"],
        [
            [name, ratio(v["value"]), ", ".join(ratio(p) for p in v["paired"])]
            for name, v in r["ratios"].items()
        ],
    )
    io_rows = [
        [
            c,
            spread(v["rate"]),
            num(v["ideal_rate"]["median"]),
            spread(percent(v["efficiency"])),
            cpu_cell(v["cpu_percent"]),
        ]
        for c, v in r["io"].items()
    ]
    io = md_table(
        ["concurrency", "messages/s", "ideal", "efficiency %", "CPU % of one core"], io_rows
    )
    return (
        f"{r['settings']['messages']:,} messages per no-op run.\n\n{table}\n\n{ratios}\n\n"
        f"I/O-bound handler (`await asyncio.sleep(0.020)`), ideal = min(c / 0.020 s, best "
        f"no-op rate):\n\n{io}\n\n![consume](consume.png)\n"
    )


def _e2e_row(label: str, v: Doc) -> list[str]:
    return [
        label,
        spread(v["offered_rate"]),
        spread(v["http_rate"]),
        spread(v["processed_rate"]),
        spread(v["p50_ms"]),
        spread(v["p95_ms"]),
        spread(v["p99_ms"]),
        spread(v["max_ms"]),
        v["sustained_runs"],
    ]


def e2e(r: Doc) -> str:
    if "systems" not in r:
        return "Results in an older format; re-run `python -m bench --only e2e`.\n"
    s = r["settings"]
    capacity = md_table(
        ["system", "highest sustained events/s", "lowest failing", "loads tried (events/s)"],
        [
            [
                v["label"],
                num(v["highest_sustained_rate"]),
                num(v["lowest_failing_rate"]) if v["lowest_failing_rate"] else DASH,
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
    latency = md_table(header, rows)
    ratios = md_table(
        ["ratio (same run)", "value"],
        [[name, ratio(v["value"])] for name, v in r["ratios"].items()],
    )
    cpu_rows = []
    for name, v in r["systems"].items():
        half = v["fractions"].get("0.5")
        if half:
            first = half["runs"][0]
            cpu_rows.append([name, num(first["offered_rate"]), cpu_cell(first["cpu_percent"])])
    cpu = md_table(["system at 50 %", "events/s", "CPU % of one core"], cpu_rows)
    return (
        f"Open loop, {s['seconds']:g} s measured per load after {s['warmup']:g} s of load; "
        f"search from {s['start_rate']} events/s (x{s['growth']:g} while sustained, then "
        f"{s['search_steps']} bisections); fractions of each system's own highest sustained "
        f"rate, {s['repeats']} session(s) for ours, 1 for the baselines; "
        f"{s['target_runs']} loads at {s['target_rate']} events/s with shipped telemetry.\n\n"
        f"{capacity}\n\n{latency}\n\n{ratios}\n\n{cpu}\n\n![end to end](e2e.png)\n"
    )


def emulator(r: Doc) -> str:
    st = r["startup"]
    t = r["throughput"]
    rows = [
        ["start-up: spawn -> connection string", f"{spread(st['to_connection_string_s'], 2)} s"],
        ["start-up: spawn -> first message acknowledged", f"{spread(st['to_first_send_s'], 2)} s"],
        ["RSS at rest", f"{spread(st['rss_at_rest_mib'])} MiB"],
        ["batched send (SDK, full batches)", f"{spread(t['send_rate'])} msg/s"],
        ["receive + complete (SDK, 100 per receive)", f"{spread(t['receive_rate'])} msg/s"],
        [
            "emulator CPU during send / receive",
            f"{num(t['send_emulator_cpu_percent']['median'])} % / "
            f"{num(t['receive_emulator_cpu_percent']['median'])} %",
        ],
        [
            f"RSS with {r['settings']['messages']:,} messages stored",
            f"{spread(t['rss_with_messages_mib'])} MiB",
        ],
        ["RSS after receiving them all", f"{spread(t['rss_after_drain_mib'])} MiB"],
        ["memory per stored message", f"{num(r['per_message_kib'], 2)} KiB"],
    ]
    return md_table(["", ""], rows) + "\n\n![emulator](emulator.png)\n"
