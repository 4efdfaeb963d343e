"""A bare AMQP client for misbehaviour tests: proton's protocol engine on a plain socket.

Unlike an SDK it does only what the test says: it can stop reading its socket, send bytes
of its own, or skip steps, which is what a broken or hostile client does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import socket
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

from proton import Connection, Endpoint, Message, Transport

from emulator.runtime import DEFAULT_KEY, DEFAULT_KEY_NAME

__all__ = ["RawClient", "sas_token", "socket_closed_by_peer"]


def sas_token(audience: str, key_name: str = DEFAULT_KEY_NAME, key: str = DEFAULT_KEY) -> str:
    """A SharedAccessSignature for ``audience``, valid for an hour."""
    expiry = int(time.time()) + 3600
    resource = quote_plus(audience)
    signature = base64.b64encode(
        hmac.new(key.encode(), f"{resource}\n{expiry}".encode(), hashlib.sha256).digest()
    )
    return (
        f"SharedAccessSignature sr={resource}&sig={quote_plus(signature.decode())}"
        f"&se={expiry}&skn={key_name}"
    )


def socket_closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Read and discard until the peer closes; ``True`` if it did within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except OSError:
            return True
    return False


class RawClient:
    """One AMQP connection with one session, driven by hand.

    Args:
        port: The emulator's port on 127.0.0.1.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connection = Connection()
        self.connection.hostname = "127.0.0.1"
        self.transport = Transport()
        self.transport.sasl().allowed_mechs("ANONYMOUS")
        self.transport.bind(self.connection)
        self.connection.open()
        self.session = self.connection.session()
        self.session.open()
        self.reading = True

    def flush(self) -> None:
        """Write everything the engine has to send."""
        while True:
            pending = self.transport.pending()
            if pending <= 0:
                return
            data = self.transport.peek(pending)
            assert data is not None
            self.sock.sendall(data)
            self.transport.pop(len(data))

    def pump(self, seconds: float = 0.05) -> None:
        """Write what is pending, then read (unless reading stopped) for up to ``seconds``."""
        self.flush()
        if not self.reading:
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.005, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                break
            if not data:
                self.transport.close_tail()
                break
            self.transport.push(data)
            self.flush()

    def until(self, predicate: Any, within: float = 10.0) -> None:
        """Pump until ``predicate()`` is true; ``AssertionError`` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            self.pump(0.05)

    def open(self) -> None:
        """Complete SASL and the connection/session open."""
        self.until(lambda: self.connection.state & Endpoint.REMOTE_ACTIVE)

    def authorize(self, entity: str) -> None:
        """Put a SAS token for ``entity`` on ``$cbs`` (without waiting for the answer)."""
        sender = self.session.sender(f"cbs-{uuid.uuid4()}")
        sender.target.address = "$cbs"
        sender.source.address = "$cbs"
        sender.open()
        receiver = self.session.receiver(f"cbs-reply-{uuid.uuid4()}")
        receiver.source.address = "$cbs"
        receiver.target.address = "$cbs"
        receiver.open()
        receiver.flow(10)
        self.until(lambda: sender.credit > 0)
        audience = f"sb://127.0.0.1:{self.port}/{entity}"
        request = Message(
            id=uuid.uuid4(),
            reply_to="$cbs",
            body=sas_token(audience),
            properties={
                "operation": "put-token",
                "type": "servicebus.windows.net:sastoken",
                "name": audience,
            },
        )
        delivery = sender.delivery("1")
        sender.send(request.encode())
        sender.advance()
        del delivery
        self.flush()

    def receiver(self, entity: str, credit: int) -> Any:
        """Attach a peek-lock receiver to ``entity`` and grant ``credit``."""
        link = self.session.receiver(f"recv-{uuid.uuid4()}")
        link.source.address = f"amqps://127.0.0.1:{self.port}/{entity}"
        link.target.address = f"receiver-{uuid.uuid4()}"
        link.open()
        link.flow(credit)
        self.flush()
        return link

    def sender(self, entity: str) -> Any:
        """Attach a sender to ``entity`` and wait until the emulator grants credit."""
        link = self.session.sender(f"send-{uuid.uuid4()}")
        link.target.address = f"amqps://127.0.0.1:{self.port}/{entity}"
        link.source.address = f"sender-{uuid.uuid4()}"
        link.open()
        self.until(lambda: link.credit > 0 or link.state & Endpoint.REMOTE_CLOSED)
        return link

    def send(self, link: Any, payload: bytes) -> Any:
        """Send one encoded message on ``link``; returns the delivery."""
        delivery = link.delivery(str(uuid.uuid4()))
        link.send(payload)
        link.advance()
        self.flush()
        return delivery

    @staticmethod
    def condition_name(endpoint_or_state: Any) -> str | None:
        """The AMQP error condition name of a remote condition, if any."""
        condition = endpoint_or_state.remote_condition if endpoint_or_state else None
        return None if condition is None else str(condition.name)

    def close(self) -> None:
        """Drop the socket."""
        with contextlib.suppress(OSError):
            self.sock.close()
