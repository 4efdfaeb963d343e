"""``/flow``: outbox backlog, messages per queue and consumer outcomes, as charts that
refresh (htmx polls ``/flow/panel`` every sample interval and swaps it in)."""

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.charts import Chart, line_chart
from console.deps import PrincipalDep, ServicesDep, render
from console.sampler import FlowSampler, Sample, per_interval
from consumer.stores.outcomes import OUTCOMES

router = APIRouter()

OUTCOME_LINES = (
    ("completed", "s-active", "completed"),
    ("dead-lettered", "s-dead", "dead_lettered"),
    ("retried", "s-scheduled", "retried"),
)
"""Label, CSS class and outcome of each line of an outcome chart."""


@dataclass(frozen=True)
class OutcomeView:
    """The consumer outcomes the page shows, from either source.

    Attributes:
        per: What one point covers: ``minute`` (the consumer's database) or ``5 s`` (the
            sample interval, from ``/status``).
        series: Per queue and outcome, one value per point, oldest first.
        totals: Per queue and outcome, the sum over the points.
        reasons: Per queue, dead-lettered by reason over the points (database only).
        span_minutes: Minutes the points cover.
        from_store: Read from the consumer's database (every replica) rather than one
            consumer's ``/status``.
    """

    per: str
    series: dict[str, dict[str, list[int]]]
    totals: dict[str, dict[str, int]]
    reasons: dict[str, dict[str, int]]
    span_minutes: float
    from_store: bool


def outcome_view(sampler: FlowSampler, samples: list[Sample]) -> OutcomeView | None:
    """The outcomes of the latest sample's source; ``None`` when there are none to show."""
    latest = samples[-1] if samples else None
    if latest is not None and latest.minutes is not None:
        minutes = latest.minutes
        return OutcomeView(
            per="minute",
            series=minutes.counts,
            totals={q: {o: sum(v) for o, v in by.items()} for q, by in minutes.counts.items()},
            reasons=minutes.reasons,
            span_minutes=float(len(minutes.minutes)),
            from_store=True,
        )
    series = {
        queue: {outcome: per_interval(samples, queue, outcome) for outcome in OUTCOMES}
        for queue in sampler.queues
        if any(queue in s.outcomes for s in samples)
    }
    if not series:
        return None
    span = (samples[-1].at - samples[0].at).total_seconds() / 60 if len(samples) > 1 else 0.0
    return OutcomeView(
        per=f"{sampler.interval:g} s",
        series=series,
        totals={q: {o: sum(v) for o, v in by.items()} for q, by in series.items()},
        reasons={},
        span_minutes=span,
        from_store=False,
    )


def flow_context(sampler: FlowSampler) -> dict[str, Any]:
    """The charts and latest figures for the flow templates."""
    samples = list(sampler.samples)
    outcomes = outcome_view(sampler, samples)
    charts: list[Chart] = []
    if any(s.backlog is not None for s in samples):
        charts.append(
            line_chart(
                "Outbox backlog (events)",
                [("pending", "s-backlog", [float(s.backlog or 0) for s in samples])],
            )
        )
    for queue in sampler.queues:
        counted = [s.queues[queue] for s in samples if queue in s.queues]
        charts.append(
            line_chart(
                f"{queue}: messages",
                [
                    ("active", "s-active", [float(c.active) for c in counted]),
                    ("scheduled", "s-scheduled", [float(c.scheduled) for c in counted]),
                    ("dead-lettered", "s-dead", [float(c.dead_lettered) for c in counted]),
                ],
            )
        )
        if outcomes is not None and queue in outcomes.series:
            by_outcome = outcomes.series[queue]
            charts.append(
                line_chart(
                    f"{queue}: consumer outcomes per {outcomes.per}",
                    [
                        (label, css, [float(v) for v in by_outcome[outcome]])
                        for label, css, outcome in OUTCOME_LINES
                    ],
                )
            )
    span = (samples[-1].at - samples[0].at).total_seconds() / 60 if len(samples) > 1 else 0.0
    return {
        "latest": sampler.latest,
        "charts": charts,
        "outcomes": outcomes.totals if outcomes is not None else {},
        "outcome_view": outcomes,
        "span_minutes": span,
        "interval": sampler.interval,
    }


@router.get("/flow")
async def flow_page(request: Request, _principal: PrincipalDep, services: ServicesDep) -> Response:
    if services.sampler.latest is None:
        await services.sampler.sample()
    return render(request, "flow.html", flow_context(services.sampler))


@router.get("/flow/panel")
async def flow_panel(request: Request, _principal: PrincipalDep, services: ServicesDep) -> Response:
    return render(request, "_flow_panel.html", flow_context(services.sampler))
