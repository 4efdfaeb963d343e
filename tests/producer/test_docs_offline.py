"""``/docs`` and ``/redoc`` work offline: every asset they load is served by the producer."""

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from producer import ProducerSettings, create_app

CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture
def client(
    shared_connection_string: str, make_settings: Callable[..., ProducerSettings]
) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(shared_connection_string))) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_only_same_origin_assets(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assets = [u for u in urls if u.rsplit(".", 1)[-1] in {"js", "css", "png"}]

    assert assets, html.text
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "validatorUrl" not in html.text or '"validatorUrl": null' in html.text
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        expected = CONTENT_TYPES["." + url.rsplit(".", 1)[-1]]
        assert expected in asset.headers["content-type"], (url, asset.headers["content-type"])
