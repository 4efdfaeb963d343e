"""The console's FastAPI app: middleware, error pages, routers, lifespan.

Every route needs a signed-in principal (:mod:`console.auth`) except the sign-in form, the
static assets and ``/healthz``; every state-changing request needs the CSRF token
(:mod:`console.csrf`, an app-wide dependency). Responses carry a Content-Security-Policy
that allows scripts, styles and images from the console itself only, so even markup that
got past escaping could not run a script.
"""

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import Response

from console.auth import NotAllowed, SignInRequired
from console.csrf import CsrfFailed, verify_csrf
from console.deps import render
from console.pages import audit, dlq, events, flow, signin
from console.services import open_services
from console.settings import ConsoleSettings

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SESSION_COOKIE = "console_session"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def create_app(settings: ConsoleSettings) -> FastAPI:
    """The console for ``settings``; its lifespan opens the sources (:func:`open_services`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="servicebus-events console",
        lifespan=lifespan,
        dependencies=[Depends(verify_csrf)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    secret = settings.session_secret.get_secret_value() if settings.session_secret else None
    if secret is None:
        logger.warning("CONSOLE_SESSION_SECRET not set: sessions end when the console restarts")
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret or secrets.token_urlsafe(32),
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.session_max_age.total_seconds()),
        same_site="strict",
        https_only=settings.secure_cookies,
    )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (signin, events, flow, dlq, audit):
        app.include_router(module.router)
    _error_pages(app, settings)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/events", status_code=303)

    return app


def _error_pages(app: FastAPI, settings: ConsoleSettings) -> None:
    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _error: SignInRequired) -> Response:
        if settings.auth == "api-key" and request.method == "GET":
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/login?next={target}", status_code=303)
        message = (
            "Sign in first."
            if settings.auth == "api-key"
            else "Sign in with Microsoft Entra ID (/.auth/login/aad)."
        )
        return render(request, "error.html", {"title": "Sign-in required", "message": message}, 401)

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, error: NotAllowed) -> Response:
        return render(request, "error.html", {"title": "Not allowed", "message": str(error)}, 403)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, error: CsrfFailed) -> Response:
        message = f"Refused: {error}. Reload the page and try again."
        return render(request, "error.html", {"title": "Request refused", "message": message}, 403)
