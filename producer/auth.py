"""Who is calling: API keys and Microsoft Entra ID access tokens.

Every ``/v1`` route depends on :func:`authenticate`. A caller presents either

* ``X-API-Key: <key>``: compared, hashed, in constant time against ``PRODUCER_API_KEYS``
  (see :mod:`producer.apikeys`); the caller is ``<source>/clients/<key name>``; or
* ``Authorization: Bearer <access token>`` issued by Microsoft Entra ID for this API
  (when ``PRODUCER_ENTRA_TENANT_ID`` and ``PRODUCER_ENTRA_AUDIENCES`` are set): an RS256
  JWT verified against the tenant's signing keys (JWKS, fetched and cached with PyJWT's
  ``PyJWKClient``), its ``aud`` (one of the audiences), ``iss`` (the tenant's v1 or v2
  issuer), ``tid``, ``exp`` and ``nbf`` (60 s leeway), and, if configured, an app role in
  ``roles``. The caller is ``<source>/apps/<azp or appid>``. See
  https://learn.microsoft.com/entra/identity-platform/access-tokens#validate-tokens.

The caller becomes the CloudEvents ``source`` of the events it sends. Failures answer
401 (no or bad credential) or 403 (valid token without the required role), with a
``WWW-Authenticate`` challenge (RFC 9110 section 11.6.1; RFC 6750 section 3 for Bearer).
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import jwt
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from producer.apikeys import match_api_key
from producer.problems import Problem
from producer.settings import ProducerSettings

logger = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-API-Key"
LEEWAY_SECONDS: Final = 60
JWKS_CACHE_SECONDS: Final = 3600
_REALM: Final = 'realm="producer"'

api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key configured (as its SHA-256) in PRODUCER_API_KEYS.",
)
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="EntraID",
    bearerFormat="JWT",
    description="A Microsoft Entra ID access token whose audience is this API.",
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        kind: ``api-key`` or ``entra``.
        name: Key name, or the token's client application id (``azp``/``appid``).
        source: CloudEvents ``source`` recorded on the caller's events.
    """

    kind: Literal["api-key", "entra"]
    name: str
    source: str


class Authenticator:
    """Checks credentials against the settings (one per app).

    Args:
        settings: API keys and the Entra ID tenant, audiences and role.
    """

    def __init__(self, settings: ProducerSettings) -> None:
        self._settings = settings
        self._keys = settings.api_keys
        self._jwks: jwt.PyJWKClient | None = None
        self._issuers: tuple[str, ...] = ()
        tenant = settings.entra_tenant_id
        if settings.entra_enabled and tenant is not None:
            url = (
                str(settings.entra_jwks_url)
                if settings.entra_jwks_url is not None
                else f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
            )
            self._jwks = jwt.PyJWKClient(url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS)
            self._issuers = (
                f"https://login.microsoftonline.com/{tenant}/v2.0",
                f"https://sts.windows.net/{tenant}/",
            )

    def _challenge(self, bearer_error: str | None = None, description: str | None = None) -> str:
        challenges = []
        if self._keys:
            challenges.append(f'ApiKey {_REALM}, header="{API_KEY_HEADER}"')
        if self._jwks is not None:
            bearer = f"Bearer {_REALM}"
            if bearer_error is not None:
                bearer += f', error="{bearer_error}"'
            if description is not None:
                bearer += f', error_description="{description.replace(chr(34), chr(39))}"'
            challenges.append(bearer)
        return ", ".join(challenges) or f"ApiKey {_REALM}"

    def _unauthorized(
        self, detail: str, bearer_error: str | None = None, description: str | None = None
    ) -> Problem:
        return Problem(
            401,
            detail,
            kind="unauthenticated",
            headers={"WWW-Authenticate": self._challenge(bearer_error, description)},
        )

    async def authenticate(self, api_key: str | None, bearer_token: str | None) -> Principal:
        """The caller presenting ``api_key`` or ``bearer_token`` (the key wins if both).

        Raises:
            Problem: 401 without a valid credential, 403 for a token without the required
                role, 503 when the tenant's signing keys cannot be fetched.
        """
        if api_key is not None:
            key = match_api_key(api_key, self._keys)
            if key is None:
                raise self._unauthorized("the API key is not valid")
            return Principal("api-key", key.name, f"{self._settings.source}/clients/{key.name}")
        if bearer_token is not None:
            if self._jwks is None:
                raise self._unauthorized("this producer does not accept bearer tokens")
            return await self._verify_token(bearer_token)
        if not self._keys and self._jwks is None:
            raise self._unauthorized(
                "no credentials are configured on this producer "
                "(set PRODUCER_API_KEYS or PRODUCER_ENTRA_TENANT_ID and _AUDIENCES)"
            )
        raise self._unauthorized(
            f"send an API key in {API_KEY_HEADER} or an Entra ID access token as "
            "Authorization: Bearer"
        )

    async def _verify_token(self, token: str) -> Principal:
        assert self._jwks is not None
        try:
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            logger.warning("cannot fetch the Entra ID signing keys: %s", exc)
            raise Problem(
                503,
                "the identity provider's signing keys cannot be fetched right now",
                headers={"Retry-After": "5"},
            ) from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise self._unauthorized(
                "the bearer token is not valid", "invalid_token", str(exc)
            ) from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256"],
                audience=list(self._settings.entra_audiences),
                issuer=self._issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise self._unauthorized(
                f"the bearer token is not valid: {exc}", "invalid_token", str(exc)
            ) from None
        if claims.get("tid") not in (None, self._settings.entra_tenant_id):
            raise self._unauthorized(
                "the bearer token is from another tenant", "invalid_token", "wrong tenant"
            )
        role = self._settings.entra_required_role
        roles = claims.get("roles") or []
        if role is not None and (not isinstance(roles, list) or role not in roles):
            raise Problem(
                403,
                f"the token lacks the app role {role!r}",
                kind="forbidden",
                headers={
                    "WWW-Authenticate": f'Bearer {_REALM}, error="insufficient_scope", '
                    f'error_description="app role {role} required"'
                },
            )
        name = str(claims.get("azp") or claims.get("appid") or claims.get("sub") or "unknown")
        return Principal("entra", name, f"{self._settings.source}/apps/{name}")


async def authenticate(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_scheme)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the authenticated caller (see the module docstring).

    Raises:
        Problem: 401, 403 or 503 as described in :meth:`Authenticator.authenticate`.
    """
    authenticator: Authenticator = request.app.state.authenticator
    token = credentials.credentials if credentials is not None else None
    principal = await authenticator.authenticate(api_key, token)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
"""A route parameter annotated with this receives the authenticated caller."""
