"""CSRF protection for every state-changing request (anything but GET, HEAD, OPTIONS).

The synchronizer-token pattern (OWASP CSRF cheat sheet): a random token lives in the
signed session cookie and every form carries it in a hidden ``csrf_token`` field (or a
script sends it as ``X-CSRF-Token``); a request whose token is missing or differs is
refused with 403 before its route runs. Own code rather than asgi-csrf or
fastapi-csrf-protect: the signed session already holds a per-session secret, so the check
is one constant-time comparison, where those libraries add a second cookie to sign and
keep in step. The session cookie is also ``SameSite=strict``.
"""

import hmac
import secrets

from starlette.requests import Request

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfFailed(Exception):
    """The request's CSRF token is missing or wrong (403)."""


def csrf_token(request: Request) -> str:
    """This session's token, made on first use."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = token
    return token


def rotate(request: Request) -> None:
    """A new token (at sign-in and sign-out)."""
    request.session[SESSION_KEY] = secrets.token_urlsafe(32)


async def verify_csrf(request: Request) -> None:
    """FastAPI dependency of every route: refuse an unsafe request without the token.

    Raises:
        CsrfFailed: the token is missing or does not match the session's.
    """
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(SESSION_KEY)
    presented = request.headers.get(HEADER)
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(FORM_FIELD)
            presented = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not presented:
        raise CsrfFailed("missing CSRF token")
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CsrfFailed("CSRF token does not match this session")
