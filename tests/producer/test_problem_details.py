"""Bodies that are not JSON: a 422 problem without a JSON Pointer, saying where parsing stopped."""

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from producer import ProducerSettings, create_app
from tests.producer.conftest import Caller

PROBLEM = "application/problem+json"


@pytest.fixture
def client(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(shared_connection_string))) as test_client:
        yield test_client


def test_invalid_json_has_no_pointer_but_a_line_and_column(
    client: TestClient, caller: Caller
) -> None:
    response = client.post(
        "/v1/audit-events",
        content=b'{\n  "actor": {"id": "u-42"},\n  "action": ,\n}',
        headers={**caller.headers, "content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert error["pointer"] is None
    assert error["loc"] == ["body"]
    assert error["type"] == "json_invalid"
    assert (error["line"], error["column"], error["offset"]) == (3, 13, 41)
    assert "line 3, column 13" in error["msg"]


@pytest.mark.parametrize(
    "path",
    ["/v1/audit-events", "/v1/audit-events:batch", "/v1/notifications", "/v1/notifications:batch"],
)
def test_a_body_that_is_not_utf8_is_invalid_json(
    client: TestClient, caller: Caller, path: str
) -> None:
    response = client.post(
        path,
        content=b'{"events": "\xff\xfe"}',
        headers={**caller.headers, "content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    [error] = response.json()["errors"]
    assert error["pointer"] is None
    assert error["offset"] == 12
    assert "not UTF-8" in error["msg"]
