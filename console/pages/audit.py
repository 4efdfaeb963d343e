"""``/audit``: the audit chain's last verification, a button to verify now, and the
console's recent actions (from the chain itself, so every replica and restart sees them)."""

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from console import actions
from console.deps import PrincipalDep, ServicesDep, render
from console.sources.consumer_store import VERIFY_ACTION, report_details
from contracts.audit import AuditOutcome

router = APIRouter()


@router.get("/audit")
async def audit_page(request: Request, _principal: PrincipalDep, services: ServicesDep) -> Response:
    if services.store is None:
        message = "The audit chain is in the consumer's database: set CONSOLE_AUDIT_STORE_URL."
        return render(request, "error.html", {"title": "Audit chain", "message": message}, 503)
    try:
        last = await services.store.last_verification()
        recent = await services.store.recent_actions()
    except Exception as error:
        message = f"cannot read the audit store: {type(error).__name__}: {error}"
        return render(request, "error.html", {"title": "Audit chain", "message": message}, 502)
    result = last.event.get("data", {}).get("details", {}) if last is not None else None
    context = {"last": last, "result": result, "recent": recent}
    return render(request, "audit.html", context)


@router.post("/audit/verify")
async def verify_now(request: Request, principal: PrincipalDep, services: ServicesDep) -> Response:
    if services.store is None:
        message = "The audit chain is in the consumer's database: set CONSOLE_AUDIT_STORE_URL."
        return render(request, "error.html", {"title": "Audit chain", "message": message}, 503)
    report = await services.store.verify()
    await actions.record(
        services.store,
        principal,
        VERIFY_ACTION,
        ("audit-chain", "audit_events"),
        AuditOutcome.SUCCESS if report.ok else AuditOutcome.FAILURE,
        report_details(report),
        request,
        reason=report.problem,
    )
    # Post/redirect/get: the page shows the record just written, and reload does not re-verify.
    return RedirectResponse("/audit", status_code=303)
