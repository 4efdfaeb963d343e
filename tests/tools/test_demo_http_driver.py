"""``make run``'s HTTP client: every request answered once, in its own slot, over
keep-alive connections; a lost answer is reported, never silently re-sent."""

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tools.http_driver import Answer, build_post, post_all


@dataclass
class Server:
    """A loopback HTTP/1.1 server that answers ``202 {"id": <the body's "n">}``.

    A body with ``"drop": true`` gets no answer (the connection is closed after reading it);
    with ``"close": true`` the answer carries ``connection: close``; with ``"chunked":
    true`` the answer has no ``Content-Length``.
    """

    port: int = 0
    connections: int = 0
    received: Counter[int] = field(default_factory=Counter)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                start = head.index(b"content-length:") + len(b"content-length:")
                length = int(head[start : head.index(b"\r\n", start)])
                request = json.loads(await reader.readexactly(length))
                self.received[request["n"]] += 1
                if request.get("drop"):
                    break
                body = json.dumps({"id": request["n"]}).encode()
                if request.get("chunked"):
                    writer.write(b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n")
                    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                    continue
                close = b"connection: close\r\n" if request.get("close") else b""
                writer.write(
                    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                    + close
                    + b"content-length: %d\r\n\r\n" % len(body)
                    + body
                )
                await writer.drain()
                if close:
                    break
        except asyncio.IncompleteReadError:  # the client closed its connection
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state


async def drive(
    server: Server, requests: list[dict[str, object]], concurrency: int
) -> dict[int, list[Answer]]:
    payloads = [
        build_post("127.0.0.1", server.port, "/v1/x", json.dumps(r).encode(), {"X-API-Key": "k"})
        for r in requests
    ]
    answers: dict[int, list[Answer]] = {}
    await post_all(
        "127.0.0.1",
        server.port,
        payloads,
        concurrency=concurrency,
        on_answer=lambda index, answer: answers.setdefault(index, []).append(answer),
        request_timeout=10,
    )
    return answers


async def test_every_request_gets_its_own_answer_over_one_connection_per_slot(
    server: Server,
) -> None:
    answers = await drive(server, [{"n": n} for n in range(400)], concurrency=8)

    assert sorted(answers) == list(range(400))
    for index, [answer] in answers.items():
        assert answer.status == 202
        assert json.loads(answer.body) == {"id": index}
    assert server.received == Counter(range(400))
    assert server.connections == 8  # keep-alive: no connection per request


async def test_a_lost_answer_is_reported_once_and_not_sent_again(server: Server) -> None:
    requests: list[dict[str, object]] = [{"n": n} for n in range(50)]
    requests[20]["drop"] = True

    answers = await drive(server, requests, concurrency=4)

    lost = answers[20]
    assert len(lost) == 1
    assert lost[0].status == 0
    assert lost[0].error is not None
    assert "IncompleteReadError" in lost[0].error
    assert server.received[20] == 1  # a POST whose answer was lost may have been applied
    assert all(a.status == 202 for i, [a] in answers.items() if i != 20)
    assert server.received == Counter(range(50))


async def test_server_closing_a_connection_after_its_answer_is_not_an_error(
    server: Server,
) -> None:
    requests: list[dict[str, object]] = [{"n": n, "close": n % 3 == 0} for n in range(60)]

    answers = await drive(server, requests, concurrency=4)

    assert all(a.status == 202 and json.loads(a.body) == {"id": i} for i, [a] in answers.items())
    assert server.received == Counter(range(60))
    # A new connection after each of the 20 closes that had a request after it.
    assert 4 < server.connections <= 4 + 20


async def test_an_answer_without_content_length_is_reported(server: Server) -> None:
    answers = await drive(server, [{"n": 0, "chunked": True}, {"n": 1}], concurrency=1)

    assert answers[0][0].status == 0
    assert answers[0][0].error == "ProtocolError: chunked response without Content-Length"
    assert answers[1][0].status == 202  # the next request goes over a new connection


async def test_concurrency_below_one_names_the_argument() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        await post_all("127.0.0.1", 9, [b""], concurrency=0, on_answer=lambda i, a: None)
