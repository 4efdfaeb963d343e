"""Microsoft Entra ID sign-in to Azure Database for PostgreSQL: an access token as password.

In Azure the apps reach PostgreSQL as their managed identity: the database URL names the
identity as the user and carries no password
(``postgresql+asyncpg://id-producer-…@psql-….postgres.database.azure.com:5432/…?ssl=require``,
set by ``infra/main.bicep``), and each new connection presents a Microsoft Entra access
token for ``https://ossrdbms-aad.database.windows.net/.default`` as its password
(https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-connect-with-managed-identity).
Microsoft's ``azure-postgresql-auth`` library does the token exchange on SQLAlchemy's
``do_connect``; this module decides when it applies and which credential it uses.

The token is fetched synchronously when the pool opens a connection (the library's
SQLAlchemy hook cannot await); ``azure-identity`` caches it until shortly before it
expires, so the event loop waits on the token endpoint about once an hour, not per
connection. An open connection stays signed in after its token expires.
"""

from typing import Any

from azure.core.credentials import TokenCredential
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

AZURE_POSTGRES_DOMAIN = ".postgres.database."
"""What every Azure Database for PostgreSQL host name contains
(``<server>.postgres.database.azure.com``, and the sovereign clouds' equivalents)."""


def signs_in_with_entra(url: URL) -> bool:
    """Whether ``url`` is a PostgreSQL URL to an Azure server with a user and no password.

    A URL with a password keeps password authentication, whatever its host.
    """
    return (
        url.get_backend_name() == "postgresql"
        and bool(url.username)
        and url.password is None
        and AZURE_POSTGRES_DOMAIN in (url.host or "")
    )


def entra_connect_args(credential: TokenCredential | None = None) -> dict[str, Any]:
    """``connect_args`` for :func:`enable_entra_sign_in`: the credential whose tokens
    become passwords (default: ``DefaultAzureCredential``, the managed identity named by
    ``AZURE_CLIENT_ID`` in Azure)."""
    if credential is None:
        from azure.identity import DefaultAzureCredential  # only when signing in this way

        credential = DefaultAzureCredential()
    return {"credential": credential}


def enable_entra_sign_in(engine: AsyncEngine) -> None:
    """Make ``engine`` (created with :func:`entra_connect_args` in its ``connect_args``)
    present an Entra access token as the password of every new connection.

    Raises (from the first connection, inside ``engine.connect()`` / ``engine.begin()``):
        azure_postgresql_auth.errors.EntraConnectionValueError: no token could be had
        (no managed identity, or it may not sign in).
    """
    from azure_postgresql_auth.sqlalchemy import enable_entra_authentication_async

    enable_entra_authentication_async(engine)
