"""``python -m bench``: run the benchmarks and write the report.

Full run (about 25 minutes on 2 cores) writes ``docs/benchmarks/``; ``--quick`` (a few
minutes, small sizes, one repeat) writes ``.run/bench-quick/`` unless ``--out`` says
otherwise. ``--only`` runs some scenarios and merges them into the existing results.
Logs and databases of every process go to ``.run/bench-<timestamp>/`` (databases are
deleted at the end unless ``--keep-data``). PostgreSQL at 127.0.0.1:5432 and Redis at
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) must be running.
"""

import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import report
from bench.machine import facts
from bench.scenarios import accept, consume, e2e, emulator, publish
from bench.support import Reporter, Settings, console
from bench.systems import Context
from bench.taskqueues import check_redis
from tools.processes import ROOT

Scenario = tuple[Callable[[Settings], int], Callable[[Context], Awaitable[dict[str, Any]]]]
NEEDS_REDIS = ("accept", "e2e")
"""Scenarios with Celery and ARQ baselines."""
SCENARIOS: dict[str, Scenario] = {
    "accept": (accept.steps, accept.run),
    "publish": (publish.steps, publish.run),
    "consume": (consume.steps, consume.run),
    "e2e": (e2e.steps, e2e.run),
    "emulator": (emulator.steps, emulator.run),
}

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


MAKE_RUN_TARGET: dict[str, Any] = {
    "name": "`make run`: HTTP phase, after / before",
    "value": float("nan"),
    "target": 2.0,
    "comparison": ">=",
    "unit": "x",
    "met": False,
    "pending": True,
    "goal_text": f">= 2{chr(0xD7)}",
    "detail": "not measured by `make bench`: `python -m tools.demo` before and after on one "
    "machine, in findings.md",
}
"""A target of issue 22 the bench cannot measure (it compares two versions of the demo)."""


def _targets(scenarios: dict[str, Any]) -> list[dict[str, Any]]:
    found = [t for key in SCENARIOS for t in scenarios.get(key, {}).get("targets", [])]
    return [*found, MAKE_RUN_TARGET]


async def _run(
    settings: Settings, names: list[str], out: Path, run_dir: Path, mode: str, merge: bool
) -> bool:
    started = time.monotonic()
    doc: dict[str, Any] = {
        "mode": mode,
        "settings": asdict(settings),
        "machine": await facts(),
        "scenarios": {},
        "targets": [],
        "duration_s": 0.0,
    }
    previous = out / "results.json"
    if merge and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("mode") == mode:
            doc["scenarios"] = {k: v for k, v in old.get("scenarios", {}).items() if k in SCENARIOS}
            doc["merged_from"] = old.get("machine", {}).get("date")
    ok = True
    total = sum(SCENARIOS[name][0](settings) for name in names)
    with Reporter(total) as reporter:
        ctx = Context(settings, run_dir, reporter)
        for name in names:
            try:
                doc["scenarios"][name] = await SCENARIOS[name][1](ctx)
            except Exception as exc:
                ok = False
                reporter.log(f"[red]{name} failed[/]: {exc!r}\n{traceback.format_exc()}")
                doc["scenarios"][name] = {"error": repr(exc)}
            doc["targets"] = _targets(doc["scenarios"])
            doc["duration_s"] = time.monotonic() - started
            report.write(doc, out)
    return ok


@app.command()
def main(
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke run: small sizes, one repeat.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(help=f"Run only these scenarios ({', '.join(SCENARIOS)}); repeatable."),
    ] = None,
    repeats: Annotated[int | None, typer.Option(min=1, help="Runs per configuration.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where results and the report go.")] = None,
    keep_data: Annotated[
        bool, typer.Option("--keep-data", help="Keep the run's database files.")
    ] = False,
    report_only: Annotated[
        bool,
        typer.Option("--report-only", help="Only re-render README.md and plots from results.json."),
    ] = False,
) -> None:
    """Run the benchmarks side by side and write JSON, Markdown and PNG plots."""
    if report_only:
        target = out or (ROOT / ".run" / "bench-quick" if quick else ROOT / "docs" / "benchmarks")
        source = target / "results.json"
        if not source.is_file():
            console.print(f"bench: error: --report-only: no {source} (run the benchmarks first)")
            raise typer.Exit(2)
        doc = json.loads(source.read_text())
        for path in report.write(doc, target):
            console.print(f"wrote {path}")
        return
    settings = Settings.quick() if quick else Settings()
    if repeats is not None:
        settings.repeats = repeats
        settings.emulator_repeats = repeats
    names = only if only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise typer.BadParameter(f"unknown scenario(s): {', '.join(unknown)}", param_hint="--only")
    if any(name in NEEDS_REDIS for name in names):
        problem = asyncio.run(check_redis())
        if problem is not None:
            console.print(f"bench: error: {problem}", soft_wrap=True)
            raise typer.Exit(2)
    mode = "quick" if quick else "full"
    target_dir = out or (ROOT / ".run" / "bench-quick" if quick else ROOT / "docs" / "benchmarks")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = ROOT / ".run" / f"bench-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]benchmarks[/] ({mode}): {', '.join(names)}; report -> {target_dir}; "
        f"logs -> {run_dir}"
    )
    try:
        ok = asyncio.run(_run(settings, names, target_dir, run_dir, mode, merge=bool(only)))
    finally:
        if not keep_data:
            for pattern in ("*.db", "*.db-wal", "*.db-shm"):
                for path in run_dir.rglob(pattern):
                    path.unlink(missing_ok=True)
    console.print(f"report: {target_dir / 'README.md'}")
    if not ok:
        raise typer.Exit(1)
