"""Sign-in, roles, CSRF and escaping, through the real app (TestClient) on the emulator."""

import base64
import json
import subprocess
import sys

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from fastapi.testclient import TestClient
from pydantic import SecretStr

from console.apikeys import parse_console_api_keys
from console.app import create_app
from console.settings import ConsoleSettings
from tests.conftest import AUDIT_QUEUE
from tests.console.conftest import csrf_from, sign_in

HOSTILE = "<script>alert('body')</script><b>bold</b>"


def test_nothing_is_reachable_without_sign_in(client: TestClient) -> None:
    for path in ("/events", "/flow", "/flow/panel", "/dlq", "/dlq/audit", "/audit"):
        answer = client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=")
    token = csrf_from(client.get("/login").text)  # a session with a valid token, no sign-in
    for path in ("/audit/verify", "/dlq/audit/confirm", "/dlq/audit/replay", "/dlq/audit/purge"):
        answer = client.post(path, data={"csrf_token": token, "action": "replay"})
        assert answer.status_code == 401, path


def test_a_wrong_key_is_refused(client: TestClient) -> None:
    page = client.get("/login")
    answer = client.post("/login", data={"api_key": "nope", "csrf_token": csrf_from(page.text)})
    assert answer.status_code == 401
    assert client.get("/events").status_code == 303


def test_sign_in_needs_the_csrf_token(client: TestClient, keys: dict[str, tuple[str, str]]) -> None:
    client.get("/login")
    answer = client.post("/login", data={"api_key": keys["operator"][0]})
    assert answer.status_code == 403
    assert "CSRF" in answer.text
    assert client.get("/events").status_code == 303


def test_state_changing_requests_need_the_csrf_token(
    client: TestClient, keys: dict[str, tuple[str, str]]
) -> None:
    sign_in(client, keys["operator"][0])
    token = csrf_from(client.get("/audit").text)
    assert client.post("/audit/verify").status_code == 403
    assert client.post("/audit/verify", data={"csrf_token": "x" + token}).status_code == 403
    assert client.post("/audit/verify", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    missing = client.post("/dlq/audit/replay", data={"sequence_number": "1"})
    assert missing.status_code == 403
    assert client.post("/logout").status_code == 403
    assert client.post("/audit/verify", data={"csrf_token": token}).status_code == 303


def test_the_token_changes_at_sign_in(client: TestClient, keys: dict[str, tuple[str, str]]) -> None:
    before = csrf_from(client.get("/login").text)
    sign_in(client, keys["operator"][0])
    after = csrf_from(client.get("/audit").text)
    assert before != after
    assert client.post("/audit/verify", data={"csrf_token": before}).status_code == 403


def test_replay_and_purge_need_the_operator_role(
    client: TestClient, keys: dict[str, tuple[str, str]]
) -> None:
    sign_in(client, keys["reader"][0])
    token = csrf_from(client.get("/dlq/audit").text)
    for path in ("/dlq/audit/confirm", "/dlq/audit/replay", "/dlq/audit/purge"):
        answer = client.post(
            path, data={"csrf_token": token, "action": "purge", "sequence_number": "1"}
        )
        assert answer.status_code == 403, path
        assert "operator role" in answer.text
    # A reader may verify the chain (it changes nothing but the log of who verified).
    assert client.post("/audit/verify", data={"csrf_token": token}).status_code == 303


def test_sign_in_never_redirects_off_site(
    client: TestClient, keys: dict[str, tuple[str, str]]
) -> None:
    page = client.get("/login?next=//evil.example/x")
    answer = client.post(
        "/login",
        data={
            "api_key": keys["operator"][0],
            "csrf_token": csrf_from(page.text),
            "next": "//evil.example",
        },
    )
    assert answer.headers["location"] == "/events"


def test_a_removed_key_ends_its_session(
    settings: ConsoleSettings, keys: dict[str, tuple[str, str]]
) -> None:
    first = settings.model_copy(update={"session_secret": SecretStr("s" * 32)})
    with TestClient(create_app(first), follow_redirects=False) as client:
        sign_in(client, keys["operator"][0])
        cookies = dict(client.cookies)
    fewer = first.model_copy(update={"api_keys": parse_console_api_keys([keys["reader"][1]])})
    with TestClient(create_app(fewer), follow_redirects=False, cookies=cookies) as client:
        assert client.get("/events").status_code == 303


def _principal_header(roles: list[str]) -> str:
    claims = [{"typ": "roles", "val": role} for role in roles]
    document = {"auth_typ": "aad", "claims": claims, "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_easyauth_trusts_the_platform_headers_only_when_configured(
    settings: ConsoleSettings,
) -> None:
    headers = {
        "X-MS-CLIENT-PRINCIPAL-NAME": "grace@example.com",
        "X-MS-CLIENT-PRINCIPAL": _principal_header(["Console.Operator"]),
    }
    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert client.get("/events", headers=headers).status_code == 303  # api-key mode
    easy = settings.model_copy(update={"auth": "easyauth"})
    with TestClient(create_app(easy), follow_redirects=False) as client:
        assert client.get("/events").status_code == 401
        page = client.get("/dlq/audit", headers=headers)
        assert page.status_code == 200
        assert "grace@example.com (operator)" in page.text
        reader = {**headers, "X-MS-CLIENT-PRINCIPAL": _principal_header(["Something.Else"])}
        token = csrf_from(client.get("/dlq/audit", headers=reader).text)
        refused = client.post(
            "/dlq/audit/confirm",
            headers=reader,
            data={"csrf_token": token, "action": "purge", "sequence_number": "1"},
        )
        assert refused.status_code == 403


async def _dead_letter(connection_string: str, body: str, reason: str) -> int:
    async with ServiceBusClient.from_connection_string(connection_string) as bus:
        async with bus.get_queue_sender(AUDIT_QUEUE) as sender:
            await sender.send_messages(
                ServiceBusMessage(
                    body,
                    message_id="<i>hostile</i>",
                    content_type="text/html",
                    application_properties={"note": "<img src=x onerror=alert(1)>"},
                )
            )
        async with bus.get_queue_receiver(AUDIT_QUEUE, max_wait_time=5) as receiver:
            [message] = await receiver.receive_messages(max_wait_time=5)
            await receiver.dead_letter_message(
                message, reason=reason, error_description="<svg onload=alert(3)>"
            )
        async with bus.get_queue_receiver(
            AUDIT_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER
        ) as dlq:
            [peeked] = await dlq.peek_messages(max_message_count=1)
            return int(peeked.sequence_number or 0)


async def test_hostile_values_are_shown_as_text(
    client: TestClient, settings: ConsoleSettings, keys: dict[str, tuple[str, str]]
) -> None:
    assert settings.servicebus_connection_string is not None
    sequence = await _dead_letter(
        settings.servicebus_connection_string.get_secret_value(), HOSTILE, "<u>reason</u>"
    )
    sign_in(client, keys["operator"][0])
    pages = [
        client.get(f"/dlq/audit/messages/{sequence}"),
        client.get("/dlq/audit"),
        client.get("/dlq"),
        client.get("/events", params={"q": "<i>hostile</i>"}),
    ]
    for page in pages:
        assert page.status_code == 200, page.text
        for raw in ("<script>", "<b>bold", "<i>hostile", "<u>reason", "<img", "<svg"):
            assert raw not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
    shown = pages[0].text
    assert "&lt;script&gt;alert(&#39;body&#39;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert "&lt;svg onload=alert(3)&gt;" in shown
    assert "dead-lettered: &lt;u&gt;reason&lt;/u&gt;" in pages[3].text


def test_assets_are_served_by_the_console(
    client: TestClient, keys: dict[str, tuple[str, str]]
) -> None:
    sign_in(client, keys["operator"][0])
    page = client.get("/flow").text
    assert '<script src="/static/htmx.min.js"' in page
    assert "http://" not in page
    assert "https://" not in page
    assert client.get("/static/htmx.min.js").status_code == 200
    assert client.get("/static/console.css").status_code == 200


def test_bad_settings_are_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "console"],
        env={"CONSOLE_PORT": "99999", "CONSOLE_SERVICEBUS_CONNECTION_STRING": "x", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "console: invalid settings: CONSOLE_PORT: Input should be less than or equal to 65535 "
        "(got '99999')"
    ]


def test_api_key_entries_carry_a_role() -> None:
    digest = "a" * 64
    parsed = parse_console_api_keys([f"ops:{digest}:operator", f"viewer:{digest}"])
    assert [(key.name, key.role) for key in parsed] == [("ops", "operator"), ("viewer", "reader")]
    with pytest.raises(ValueError, match="unknown role"):
        parse_console_api_keys([f"ops:{digest}:admin"])
    with pytest.raises(ValueError, match="name:<sha256"):
        parse_console_api_keys(["ops:short"])
