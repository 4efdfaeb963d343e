"""Authentication: hashed API keys and Entra ID tokens checked against a local JWKS."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from producer import ProducerSettings, create_app
from producer.api import require_authentication
from producer.apikeys import ApiKeyHash, hash_api_key, match_api_key, parse_api_keys
from tests.producer.conftest import AUDIT, Caller

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://servicebus-events-producer"
CLIENT_APP = "11111111-2222-3333-4444-555555555555"
ROLE = "Events.Publish"


class Jwks:
    """An RSA signing key published as a JWKS document on a loopback HTTP server."""

    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        document = json.dumps({"keys": [{**jwk, "kid": self.kid, "use": "sig"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/discovery/v2.0/keys"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, *, key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
            "aud": AUDIENCE,
            "tid": TENANT,
            "azp": CLIENT_APP,
            "sub": "service-principal-object-id",
            "roles": [ROLE],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(
            claims, key or self.private_key, algorithm="RS256", headers={"kid": self.kid}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.close()


@pytest.fixture
def client(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings], jwks: Jwks
) -> Iterator[TestClient]:
    settings = make_settings(
        shared_connection_string,
        entra_tenant_id=TENANT,
        entra_audiences=AUDIENCE,
        entra_jwks_url=jwks.url,
        entra_required_role=ROLE,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_v1_route_requires_a_credential(client: TestClient) -> None:
    for method, path in [
        ("POST", "/v1/audit-events"),
        ("POST", "/v1/audit-events:batch"),
        ("POST", "/v1/notifications"),
        ("POST", "/v1/notifications:batch"),
        ("GET", "/v1/events/some-id"),
        ("DELETE", "/v1/notifications/some-id"),
        ("GET", "/v1/stats"),
    ]:
        response = client.request(method, path, json=AUDIT)

        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        challenge = response.headers["www-authenticate"]
        assert 'ApiKey realm="producer", header="X-API-Key"' in challenge
        assert 'Bearer realm="producer"' in challenge
        assert "X-API-Key" in response.json()["detail"]


def test_a_v1_route_that_does_not_authenticate_is_refused_at_start_up() -> None:
    router = APIRouter()

    @router.get("/open")
    async def open_route() -> dict[str, str]:
        return {}

    with pytest.raises(RuntimeError, match="'/open' does not authenticate"):
        require_authentication(router)


def test_a_wrong_api_key_is_401(client: TestClient) -> None:
    response = client.post("/v1/audit-events", json=AUDIT, headers={"X-API-Key": "guess"})

    assert response.status_code == 401
    assert response.json()["detail"] == "the API key is not valid"


def test_each_key_is_recorded_as_the_events_source(
    client: TestClient, caller: Caller, other_caller: Caller
) -> None:
    for who in (caller, other_caller):
        event_id = client.post("/v1/audit-events", json=AUDIT, headers=who.headers).json()["id"]
        status = client.get(f"/v1/events/{event_id}", headers=who.headers).json()
        assert status["source"] == f"/producer/clients/{who.name}"


def test_a_valid_entra_token_is_accepted(client: TestClient, jwks: Jwks) -> None:
    headers = bearer(jwks.token())

    response = client.post("/v1/audit-events", json=AUDIT, headers=headers)

    assert response.status_code == 202
    status = client.get(f"/v1/events/{response.json()['id']}", headers=headers).json()
    assert status["source"] == f"/producer/apps/{CLIENT_APP}"


def test_a_v1_issuer_token_is_accepted(client: TestClient, jwks: Jwks) -> None:
    token = jwks.token(iss=f"https://sts.windows.net/{TENANT}/", azp=None, appid=CLIENT_APP)

    assert client.post("/v1/audit-events", json=AUDIT, headers=bearer(token)).status_code == 202


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 3600},
        {"aud": "api://someone-else"},
        {"iss": "https://login.microsoftonline.com/another-tenant/v2.0"},
        {"tid": "another-tenant"},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=["expired", "audience", "issuer", "tenant", "not-yet-valid"],
)
def test_invalid_tokens_are_401(client: TestClient, jwks: Jwks, claims: dict[str, Any]) -> None:
    response = client.post("/v1/audit-events", json=AUDIT, headers=bearer(jwks.token(**claims)))

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_token_signed_by_another_key_is_401(client: TestClient, jwks: Jwks) -> None:
    forged = jwks.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    response = client.post("/v1/audit-events", json=AUDIT, headers=bearer(forged))

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_token_without_the_role_is_403(client: TestClient, jwks: Jwks) -> None:
    response = client.post(
        "/v1/audit-events", json=AUDIT, headers=bearer(jwks.token(roles=["Other.Role"]))
    )

    assert response.status_code == 403
    assert response.json()["type"] == "/problems/forbidden"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_bearer_tokens_are_refused_when_entra_is_not_configured(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings], jwks: Jwks
) -> None:
    with TestClient(create_app(make_settings(shared_connection_string))) as client:
        response = client.post("/v1/audit-events", json=AUDIT, headers=bearer(jwks.token()))

        assert response.status_code == 401
        assert "Bearer" not in response.headers["www-authenticate"]


def test_api_keys_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = hash_api_key("k1"), hash_api_key("k2")
    monkeypatch.setenv("PRODUCER_SERVICEBUS_CONNECTION_STRING", "Endpoint=sb://x;")
    monkeypatch.setenv("PRODUCER_API_KEYS", f"billing:{first}, reports:{second.upper()}")
    monkeypatch.setenv("PRODUCER_ENTRA_AUDIENCES", "api://a,11111111-0000-0000-0000-000000000000")

    settings = ProducerSettings()

    assert settings.api_keys == (
        ApiKeyHash(name="billing", sha256=first),
        ApiKeyHash(name="reports", sha256=second),
    )
    assert settings.entra_audiences == ("api://a", "11111111-0000-0000-0000-000000000000")
    assert match_api_key("k2", settings.api_keys) == settings.api_keys[1]
    assert match_api_key("k3", settings.api_keys) is None


@pytest.mark.parametrize(
    "entries",
    [["billing:abc"], ["no-colon"], [f"a:{'0' * 64}", f"a:{'1' * 64}"], [f"bad name:{'0' * 64}"]],
)
def test_malformed_api_key_entries_are_rejected(entries: list[str]) -> None:
    with pytest.raises(ValueError, match="API key"):
        parse_api_keys(entries)
