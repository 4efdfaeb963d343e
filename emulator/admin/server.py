"""HTTPS for the administration API, on connections the AMQP port hands over.

The AMQP listener tells a TLS ClientHello from an AMQP header by the first byte and gives
TLS connections to :meth:`AdminServer.adopt` (see :mod:`emulator.server.core`), so one
port and one connection string serve both SDK clients. Each adopted connection gets a
thread running the standard library's ``ssl`` and ``http.server``: the reactor thread must
never block on a TLS handshake or a slow client, administration traffic is a handful of
requests, and a thread per connection is the simplest model ``http.server`` offers. Requests
are authorised here (the ``Authorization`` header carries a SAS token, as on Azure) and
then answered on the reactor thread, which owns the namespace.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from emulator.admin import atom
from emulator.admin.operations import AdminRequest, AdminResponse
from emulator.auth import SasValidator
from emulator.errors import UnauthorizedError

__all__ = ["MAX_CONNECTIONS", "AdminServer"]

_log = logging.getLogger(__name__)
#: Seconds a connection may sit idle (or take over its TLS handshake) before it is closed.
_IDLE_TIMEOUT = 60.0
#: Largest request body accepted (an entity description is a few KiB).
_MAX_BODY = 1024 * 1024
#: Open administration connections at most (a thread each); more are closed at once.
MAX_CONNECTIONS = 64


class AdminServer:
    """Serves HTTPS administration requests on adopted sockets.

    Args:
        cert_file: PEM certificate (see :mod:`emulator.admin.certificate`).
        key_file: Its PEM private key.
        dispatch: Answers a request (the caller runs it on the reactor thread).
        validator: Checks the SAS token of each request.
        clock: Seconds since the epoch.
    """

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        dispatch: Callable[[AdminRequest], AdminResponse],
        validator: SasValidator,
        clock: Callable[[], float],
    ) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self.dispatch = dispatch
        self.validator = validator
        self.clock = clock
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def adopt(self, sock: socket.socket) -> None:
        """Serve ``sock`` (a client that opened with a TLS ClientHello) on its own thread."""
        with self._lock:
            if self._closed or len(self._sockets) >= MAX_CONNECTIONS:
                if not self._closed:
                    _log.warning("refusing an administration connection: %d open", MAX_CONNECTIONS)
                sock.close()
                return
            self._sockets.add(sock)
        sock.setblocking(True)
        sock.settimeout(_IDLE_TIMEOUT)
        threading.Thread(
            target=self._serve, args=(sock,), name="servicebus-emulator-admin", daemon=True
        ).start()

    def _serve(self, sock: socket.socket) -> None:
        current = sock
        try:
            peer = sock.getpeername()
            tls = self._context.wrap_socket(sock, server_side=True)  # takes over ``sock``
            with self._lock:
                self._sockets.discard(sock)
                self._sockets.add(tls)
            current = tls
            # http.server's handlers only read attributes of their server: this object.
            _Handler(tls, peer, cast(Any, self))
        except (OSError, ssl.SSLError) as exc:
            _log.debug("administration connection ended: %s", exc)
        finally:
            with self._lock:
                self._sockets.discard(current)
            current.close()

    def close(self) -> None:
        """Close every open administration connection; later ones are refused."""
        with self._lock:
            self._closed = True
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One connection's HTTP/1.1 requests (kept alive between requests)."""

    protocol_version = "HTTP/1.1"
    server_version = "servicebus-emulator"
    server: Any

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        admin: AdminServer = self.server
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._send(AdminResponse(413, atom.error(413, "The request body is too large.")))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        target = urlsplit(self.path)
        path = unquote(target.path).strip("/")
        host = self.headers.get("Host") or "127.0.0.1"
        try:
            admin.validator.validate(
                self.headers.get("Authorization") or "", f"sb://{host}/{path}", admin.clock()
            )
        except UnauthorizedError as exc:
            _log.info("administration request %s /%s refused: %s", self.command, path, exc)
            self._send(AdminResponse(401, atom.error(401, exc.description)))
            return
        request = AdminRequest(
            method=self.command,
            path=path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            body=body,
            base=f"https://{host}",
            if_match=self.headers.get("If-Match") is not None,
        )
        response = admin.dispatch(request)
        _log.debug("%s /%s -> %d", self.command, path, response.status)
        self._send(response)

    def _send(self, response: AdminResponse) -> None:
        payload = response.body.encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("administration: " + format, *args)
