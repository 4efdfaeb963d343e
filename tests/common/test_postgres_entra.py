"""Microsoft Entra ID sign-in to PostgreSQL: which URLs use it, and that each new
connection asks the credential for a database token (against the real local PostgreSQL,
which accepts any password from loopback)."""

import time

import jwt
import pytest
from azure.core.credentials import AccessToken
from sqlalchemy import text
from sqlalchemy.engine import make_url

from common import pool
from common.postgres_entra import signs_in_with_entra

LOCAL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DATABASE_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


class Credential:
    """A TokenCredential whose tokens are unsigned JWTs naming a principal."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        expires = int(time.time()) + 3600
        token = jwt.encode({"upn": "postgres", "exp": expires}, key="", algorithm="none")
        return AccessToken(token, expires)


@pytest.mark.parametrize(
    ("url", "entra"),
    [
        ("postgresql+asyncpg://id-producer@psql-x.postgres.database.azure.com/db", True),
        ("postgresql+asyncpg://id-producer@psql-x.postgres.database.chinacloudapi.cn/d", True),
        ("postgresql+asyncpg://id-producer:secret@psql-x.postgres.database.azure.com/d", False),
        ("postgresql+asyncpg://psql-x.postgres.database.azure.com/db", False),
        ("postgresql+asyncpg://postgres@127.0.0.1:5432/test", False),
        ("sqlite+aiosqlite:///outbox.db", False),
    ],
)
def test_only_a_passwordless_user_on_an_azure_server_signs_in_with_entra(
    url: str, entra: bool
) -> None:
    assert signs_in_with_entra(make_url(url)) is entra


async def test_each_new_connection_presents_a_database_token() -> None:
    credential = Credential()
    engine = pool.create_engine(LOCAL, entra_credential=credential)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("select 1")) == 1
        async with engine.connect() as connection:  # pooled: no new token
            assert await connection.scalar(text("select 2")) == 2
        assert credential.scopes == [(DATABASE_SCOPE,)]
        await engine.dispose()  # the next connection is new, and signs in again
        async with engine.connect() as connection:
            assert await connection.scalar(text("select 3")) == 3
        assert credential.scopes == [(DATABASE_SCOPE,), (DATABASE_SCOPE,)]
    finally:
        await engine.dispose()


async def test_create_engine_signs_in_with_entra_where_the_url_calls_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No connection is made (the Azure host is not on loopback): the engine for an Azure
    URL gets the sign-in hook, the local one does not."""
    credential = Credential()
    monkeypatch.setattr(pool, "entra_connect_args", lambda _=None: {"credential": credential})
    azure = pool.create_engine(
        "postgresql+asyncpg://id-consumer@psql-x.postgres.database.azure.com/db"
    )
    local = pool.create_engine(LOCAL)
    try:
        assert len(azure.sync_engine.dialect.dispatch.do_connect) == 1
        assert len(local.sync_engine.dialect.dispatch.do_connect) == 0
    finally:
        await azure.dispose()
        await local.dispose()
