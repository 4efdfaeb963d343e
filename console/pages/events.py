"""``/events``: find an event by id or Idempotency-Key and say where it is."""

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from console.deps import PrincipalDep, ServicesDep, SettingsDep, render
from console.lookup import find_event
from console.settings import ConsoleSettings

router = APIRouter()


def trace_link(settings: ConsoleSettings, trace_id: str | None) -> str | None:
    """The Application Insights link for ``trace_id`` (``CONSOLE_APPINSIGHTS_TRACE_URL``)."""
    if trace_id is None or settings.appinsights_trace_url is None:
        return None
    return settings.appinsights_trace_url.replace("{trace_id}", trace_id)


def trace_command(settings: ConsoleSettings, event_id: str) -> str:
    """The local trace view command for ``event_id``."""
    files = " ".join(str(path) for path in settings.trace_files) or "<telemetry files>"
    return f"python -m tools.traceview {files} --event {event_id}"


@router.get("/events")
async def events_page(
    request: Request,
    _principal: PrincipalDep,
    services: ServicesDep,
    settings: SettingsDep,
    q: str = Query("", max_length=256),
) -> Response:
    query = q.strip()
    report = await find_event(services, query) if query else None
    context = {"query": query, "report": report, "link": None, "command": None}
    if report is not None and report.entry is not None:
        context["link"] = trace_link(settings, report.entry.trace_id)
        context["command"] = trace_command(settings, report.entry.id)
    return render(request, "events.html", context)
