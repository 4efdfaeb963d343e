"""Who is signed in, and what they may do.

Two ways in, chosen by ``CONSOLE_AUTH``:

* ``api-key`` (default, local): a sign-in form takes a key from ``CONSOLE_API_KEYS``
  (:mod:`console.apikeys`); the principal is kept in Starlette's session cookie, signed
  with ``CONSOLE_SESSION_SECRET`` (itsdangerous), ``HttpOnly`` and ``SameSite=strict``.
* ``easyauth`` (Azure): Container Apps built-in authentication signs users in with
  Microsoft Entra ID before a request reaches the app and passes the user in the
  ``X-MS-CLIENT-PRINCIPAL-NAME`` and ``X-MS-CLIENT-PRINCIPAL`` headers (base64 JSON with
  the token's claims), having removed any such headers the client sent
  (https://learn.microsoft.com/azure/container-apps/authentication#access-user-claims-in-application-code).
  They are trusted only in this mode: without the platform in front, anyone could send them.
  The operator role is an app role (``roles`` claim) named by ``CONSOLE_OPERATOR_ROLE``.

Roles: every signed-in principal may look and verify the audit chain; replay and purge
need ``operator``.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request

from console.apikeys import Role
from console.settings import ConsoleSettings

SESSION_KEY = "principal"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_HEADER = "x-ms-client-principal"
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


@dataclass(frozen=True)
class Principal:
    """A signed-in user or key.

    Attributes:
        name: Key name, or the Entra ID user's name (UPN).
        role: ``reader`` or ``operator``.
        kind: ``api-key`` or ``entra``.
    """

    name: str
    role: Role
    kind: Literal["api-key", "entra"]

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def to_session(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "kind": self.kind}


class SignInRequired(Exception):
    """No principal: the request is refused (401) or sent to the sign-in form."""


class NotAllowed(Exception):
    """Signed in, but without the role this needs (403)."""


def current_principal(request: Request, settings: ConsoleSettings) -> Principal | None:
    """The principal of ``request``, or ``None``."""
    if settings.auth == "easyauth":
        return _easyauth_principal(request, settings.operator_role)
    stored = request.session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return None
    name, role = stored.get("name"), stored.get("role")
    if not isinstance(name, str) or role not in ("reader", "operator"):
        return None
    # A key removed from CONSOLE_API_KEYS (or demoted) ends its sessions at once.
    configured = {key.name: key.role for key in settings.api_keys}
    if configured.get(name) != role:
        return None
    return Principal(name, role, "api-key")


def _easyauth_principal(request: Request, operator_role: str) -> Principal | None:
    name = request.headers.get(PRINCIPAL_NAME_HEADER)
    if not name:
        return None
    roles = _claims(request.headers.get(PRINCIPAL_HEADER, ""))
    return Principal(name, "operator" if operator_role in roles else "reader", "entra")


def _claims(encoded: str) -> set[str]:
    """The role values in an ``X-MS-CLIENT-PRINCIPAL`` header (``set()`` if unreadable)."""
    try:
        document: Any = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, ValueError):
        return set()
    if not isinstance(document, dict):
        return set()
    role_type = document.get("role_typ")
    kinds = {*_ROLE_CLAIMS, role_type} if isinstance(role_type, str) else set(_ROLE_CLAIMS)
    return {
        str(claim.get("val"))
        for claim in document.get("claims") or []
        if isinstance(claim, dict) and claim.get("typ") in kinds
    }
