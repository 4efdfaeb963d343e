"""``/login`` and ``/logout``: the API-key sign-in form (``CONSOLE_AUTH=api-key``)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from console.apikeys import match_console_key
from console.auth import SESSION_KEY, Principal
from console.csrf import rotate
from console.deps import SettingsDep, render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a full URL): no open redirect."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/events"


@router.get("/login")
async def login_form(request: Request, settings: SettingsDep, next: str | None = None) -> Response:
    if settings.auth != "api-key":
        return RedirectResponse("/.auth/login/aad", status_code=303)
    return render(request, "login.html", {"next": _safe_next(next), "failed": False})


@router.post("/login")
async def login(
    request: Request,
    settings: SettingsDep,
    api_key: Annotated[str, Form(max_length=256)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    key = match_console_key(api_key, settings.api_keys) if settings.auth == "api-key" else None
    if key is None:
        context = {"next": _safe_next(next), "failed": True}
        return render(request, "login.html", context, status_code=401)
    request.session.clear()
    request.session[SESSION_KEY] = Principal(key.name, key.role, "api-key").to_session()
    rotate(request)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
async def logout(request: Request, settings: SettingsDep) -> Response:
    request.session.clear()
    rotate(request)
    if settings.auth == "easyauth":
        return RedirectResponse("/.auth/logout", status_code=303)
    return RedirectResponse("/login", status_code=303)
