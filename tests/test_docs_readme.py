"""The README's examples do what it says: they are run, not read.

The ``curl`` examples of the Producer API section are expanded by bash (so shell
substitutions such as a relative ``deliver_at`` run as a reader's shell runs them) and sent
to a real producer on the emulator; the ``$ consumer ...`` commands run as a process with
no terminal, as in a script or CI; every ``verify_signature(...)`` call in the docs is
evaluated against a really signed webhook.
"""

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consumer.signing import signed_headers, verify_signature
from producer import ProducerSettings, create_app
from producer.apikeys import new_api_key
from tests.producer.conftest import wait_until
from tools.processes import ROOT

README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "consumer" / "signing.py"]


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a Markdown text."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def curl_commands(block: str) -> list[str]:
    """Each ``curl`` command of a bash block, continuation lines and comments included."""
    return [
        chunk for chunk in re.split(r"^(?=curl )", block, flags=re.M) if chunk.startswith("curl")
    ]


def shell_argv(command: str, env: dict[str, str]) -> list[str]:
    """The arguments bash would pass to ``curl`` for ``command``, substitutions done."""
    script = "printf '%s\\0'" + command.removeprefix("curl")
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.split("\0")[:-1]


class Request:
    """A ``curl`` argument list as method, path, headers and body."""

    def __init__(self, argv: list[str]) -> None:
        self.headers: dict[str, str] = {}
        self.body: str | None = None
        self.method = ""
        self.path = ""
        args = iter(argv)
        for arg in args:
            if arg == "-s":
                continue
            if arg == "-X":
                self.method = next(args)
            elif arg == "-H":
                name, _, value = next(args).partition(":")
                self.headers[name.strip()] = value.strip()
            elif arg == "-d":
                self.body = next(args)
            else:
                self.path = "/" + arg.split("/", 1)[1]
        self.method = self.method or ("POST" if self.body is not None else "GET")


def status(client: TestClient, key: str, event_id: str) -> str:
    answer: str = client.get(f"/v1/events/{event_id}", headers={"X-API-Key": key}).json()["status"]
    return answer


@pytest.fixture
def producer(connection_string: str, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    key, entry = new_api_key("readme")
    settings = ProducerSettings(
        servicebus_connection_string=connection_string,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}",
        api_keys=f"{entry}",
        servicebus_operation_timeout=10,
    )
    with TestClient(create_app(settings)) as client:
        yield client, key


def test_the_producer_api_examples_work_as_written(producer: tuple[TestClient, str]) -> None:
    client, key = producer
    env = {"KEY": key, "ID": ""}
    [block] = code_blocks(section(README.read_text(encoding="utf-8"), "Producer API"), "bash")
    routes = set()
    for command in curl_commands(block):
        request = Request(shell_argv(command, env))
        template = re.sub(r"/v1/(events|notifications)/[^/]+$", r"/v1/\1/{id}", request.path)
        routes.add(f"{request.method} {template}")
        if request.method == "DELETE":
            # The example cancels the notification it scheduled; wait until it is scheduled.
            assert wait_until(lambda: status(client, key, env["ID"]) == "scheduled")
        response = client.request(
            request.method, request.path, headers=request.headers, content=request.body
        )
        if request.method == "POST":
            assert response.status_code == 202, (command, response.text)
            answer = response.json()
            if request.path.endswith(":batch"):
                sent = len(json.loads(request.body or "{}")["events"])
                assert len(answer["events"]) == sent
            elif request.path == "/v1/notifications":
                assert answer["deliver_at"] is not None, "the example should schedule"
                env["ID"] = answer["id"]
        elif request.method == "DELETE":
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"
        else:
            assert response.status_code == 200, response.text
    assert {
        "POST /v1/audit-events",
        "POST /v1/audit-events:batch",
        "POST /v1/notifications",
        "GET /v1/events/{id}",
        "DELETE /v1/notifications/{id}",
    } <= routes


def test_the_consumer_commands_run_without_a_terminal(
    connection_string: str, tmp_path: Path
) -> None:
    text = section(README.read_text(encoding="utf-8"), "Consumer")
    commands = [
        line.removeprefix("$ consumer ")
        for block in code_blocks(text, "console")
        for line in block.splitlines()
        if line.startswith("$ consumer ")
    ]
    assert any(command.startswith("dlq purge") for command in commands)
    env = {
        **os.environ,
        "CONSUMER_SERVICEBUS_CONNECTION_STRING": connection_string,
        "CONSUMER_AUDIT_STORE_URL": f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}",
    }
    for command in ["migrate", *commands]:
        result = subprocess.run(
            [sys.executable, "-m", "consumer", *shlex.split(command)],
            stdin=subprocess.DEVNULL,  # no terminal, as in a script or a CI job
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"consumer {command}: {result.stderr}"


SIGNATURE_CALL = re.compile(r"verify_signature\([^()\n]*\)")


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_verify_signature_is_shown_with_its_real_arguments(path: Path) -> None:
    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLWRvY3M="
    body = b'{"type":"io.servicebus-events.notification.requested"}'
    names = {
        "body": body,
        "headers": signed_headers("evt-1", body, secret),
        "secret": secret,
        "verify_signature": verify_signature,
    }
    for call in SIGNATURE_CALL.findall(path.read_text(encoding="utf-8")):
        tree = ast.parse(call, mode="eval")
        assert isinstance(tree.body, ast.Call)
        for arg in tree.body.args:
            assert isinstance(arg, ast.Name), f"{path.name}: {call}"
            assert arg.id in names, f"{path.name}: {call}"
        # A wrong order passes the secret as the body: the signature would not match.
        assert eval(compile(tree, path.name, "eval"), {}, names) == "evt-1", call
