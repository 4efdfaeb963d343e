"""Every FastAPI dependency of the pages, and the one way a page is rendered."""

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from console.auth import NotAllowed, Principal, SignInRequired, current_principal
from console.csrf import csrf_token
from console.services import Services
from console.settings import ConsoleSettings

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _page_context(request: Request) -> dict[str, Any]:
    settings: ConsoleSettings = request.app.state.settings
    return {
        "principal": current_principal(request, settings),
        "csrf_token": csrf_token(request),
        "auth_mode": settings.auth,
    }


templates = Jinja2Templates(directory=TEMPLATES_DIR, context_processors=[_page_context])
"""Jinja2 with autoescape on (Starlette's default for ``.html``): every value is escaped."""


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """The template ``name`` as an HTML response."""
    return templates.TemplateResponse(request, name, context or {}, status_code=status_code)


def get_settings(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.settings
    return settings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def require_principal(request: Request) -> Principal:
    """The signed-in principal.

    Raises:
        SignInRequired: nobody is signed in.
    """
    principal = current_principal(request, get_settings(request))
    if principal is None:
        raise SignInRequired()
    return principal


def require_operator(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """The signed-in principal, who must have the operator role.

    Raises:
        NotAllowed: signed in without it.
    """
    if not principal.is_operator:
        raise NotAllowed("replay and purge need the operator role")
    return principal


SettingsDep = Annotated[ConsoleSettings, Depends(get_settings)]
ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(require_principal)]
OperatorDep = Annotated[Principal, Depends(require_operator)]
