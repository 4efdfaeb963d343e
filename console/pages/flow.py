"""``/flow``: outbox backlog, messages per queue and consumer outcomes, as charts that
refresh (htmx polls ``/flow/panel`` every sample interval and swaps it in)."""

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.charts import Chart, line_chart
from console.deps import PrincipalDep, ServicesDep, render
from console.sampler import FlowSampler, per_interval

router = APIRouter()


def flow_context(sampler: FlowSampler) -> dict[str, Any]:
    """The charts and latest figures for the flow templates."""
    samples = list(sampler.samples)
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
        if any(queue in s.outcomes for s in samples):
            charts.append(
                line_chart(
                    f"{queue}: consumer outcomes per {sampler.interval:g} s",
                    [
                        (label, css, [float(v) for v in per_interval(samples, queue, outcome)])
                        for label, css, outcome in (
                            ("completed", "s-active", "completed"),
                            ("dead-lettered", "s-dead", "dead_lettered"),
                            ("retried", "s-scheduled", "retried"),
                        )
                    ],
                )
            )
    minutes = {
        queue: {
            outcome: sum(per_interval(samples, queue, outcome))
            for outcome in ("completed", "dead_lettered", "retried")
        }
        for queue in sampler.queues
        if any(queue in s.outcomes for s in samples)
    }
    span = (samples[-1].at - samples[0].at).total_seconds() / 60 if len(samples) > 1 else 0.0
    return {
        "latest": sampler.latest,
        "charts": charts,
        "outcomes": minutes,
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
