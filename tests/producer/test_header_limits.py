"""Request header limits over a real uvicorn server: too large or too many is a 431 problem."""

from collections.abc import Callable, Iterator

import httpx
import pytest

from producer import ProducerSettings
from tests.producer.conftest import AUDIT, Caller
from tests.producer.live_server import serve

PROBLEM = "application/problem+json"


@pytest.fixture(params=["httptools", "h11"])
def base_url(
    request: pytest.FixtureRequest,
    shared_connection_string: str,
    make_settings: Callable[..., ProducerSettings],
) -> Iterator[str]:
    """The producer (default limits: 16 KiB, 100 fields) behind each uvicorn protocol."""
    with serve(make_settings(shared_connection_string), http=request.param) as url:
        yield url


def accepted(base_url: str, caller: Caller) -> int:
    count: int = httpx.get(f"{base_url}/v1/stats", headers=caller.headers).json()["accepted"]
    return count


def assert_431(response: httpx.Response, what: str) -> None:
    assert response.status_code == 431, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "/problems/request-header-fields-too-large"
    assert problem["status"] == 431
    assert what in problem["detail"]


def test_a_header_section_over_the_limit_gets_431(base_url: str, caller: Caller) -> None:
    response = httpx.post(
        f"{base_url}/v1/audit-events",
        json=AUDIT,
        headers={**caller.headers, "X-Padding": "x" * 20_000},
    )

    assert_431(response, "at most 16384")
    assert accepted(base_url, caller) == 0


def test_more_header_fields_than_the_limit_get_431(base_url: str, caller: Caller) -> None:
    padding = [(f"x-field-{i}", "1") for i in range(100)]
    response = httpx.post(
        f"{base_url}/v1/audit-events",
        json=AUDIT,
        headers=[*caller.headers.items(), *padding],
    )

    assert_431(response, "at most 100")
    assert accepted(base_url, caller) == 0


def test_headers_within_the_limits_are_accepted(base_url: str, caller: Caller) -> None:
    # A large but ordinary header section: a 12 KiB cookie and 80 more fields.
    fields = [(f"x-field-{i}", "1") for i in range(80)]
    response = httpx.post(
        f"{base_url}/v1/audit-events",
        json=AUDIT,
        headers=[*caller.headers.items(), ("cookie", "c=" + "x" * 12_000), *fields],
    )

    assert response.status_code == 202, response.text


def test_an_8_mib_header_is_refused_by_the_default_server(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings], caller: Caller
) -> None:
    # uvicorn's default protocol (httptools when installed) has no header limit of its own.
    with serve(make_settings(shared_connection_string)) as url:
        response = httpx.post(
            f"{url}/v1/audit-events",
            json=AUDIT,
            headers={**caller.headers, "X-Padding": "x" * (8 * 1024 * 1024)},
            timeout=60,
        )

        assert_431(response, "at most 16384")
        assert accepted(url, caller) == 0
