"""Running the emulator: a proton ``Container`` on a background thread.

``Container.run()`` blocks and proton objects are not thread-safe, so the reactor owns its
thread and everything in it; other threads reach it only through application events
injected with proton's ``EventInjector`` (a pipe the reactor polls): :meth:`Emulator.stop`,
and each administration API request (:mod:`emulator.admin`), which HTTPS threads answer on
the reactor thread. HTTPS shares the AMQP port: a client opening with a TLS handshake is
handed to :class:`~emulator.admin.AdminServer`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from proton.reactor import ApplicationEvent, Container, EventInjector

from emulator.admin import (
    AdminOperations,
    AdminRequest,
    AdminResponse,
    AdminServer,
    apply_definitions,
    ensure_certificate,
)
from emulator.admin.atom import error as error_body
from emulator.auth import SasValidator
from emulator.config import EmulatorConfig
from emulator.entity import Entity
from emulator.model import SessionInfo
from emulator.namespace import Namespace
from emulator.server import EmulatorHandler, ServerLimits
from emulator.server.core import ReactorCall
from emulator.store import SqliteStore

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_KEY_NAME",
    "Emulator",
    "connection_string",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: Seconds an administration request waits for the reactor before answering 503.
_REACTOR_CALL_TIMEOUT = 30.0

#: The official emulator's documented defaults.
DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"


class _PeerResetFilter(logging.Filter):
    """Demote proton's "Couldn't send/recv: ConnectionResetError" to DEBUG.

    The SDK closes its socket right after sending its AMQP close, so proton logs an ERROR
    for nearly every client disconnect; it is normal here, not an error.
    """

    _NOISE = ("ConnectionResetError", "BrokenPipeError")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(("Couldn't send", "Couldn't recv")) and any(
            noise in message for noise in self._NOISE
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger("proton").isEnabledFor(logging.DEBUG)
        return True


_proton_logger = logging.getLogger("proton")
if not any(isinstance(f, _PeerResetFilter) for f in _proton_logger.filters):
    _proton_logger.addFilter(_PeerResetFilter())


def connection_string(host: str, port: int, key_name: str, key: str) -> str:
    """The connection string clients use, with ``UseDevelopmentEmulator=true`` (plain TCP,
    custom port; see https://learn.microsoft.com/azure/service-bus-messaging/test-locally-with-service-bus-emulator)."""
    return (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName={key_name};"
        f"SharedAccessKey={key};UseDevelopmentEmulator=true"
    )


class Emulator:
    """One emulator instance listening on ``host:port`` (IPv4).

    Args:
        config: Validated configuration.
        host: Interface to listen on. ``0.0.0.0`` listens everywhere; the connection string
            then names ``127.0.0.1``.
        port: TCP port; 0 picks a free one (read it back from :attr:`port`).
        key_name: ``SharedAccessKeyName`` clients must use.
        key: ``SharedAccessKey`` clients must sign with.
        clock: Seconds since the epoch (UTC); injectable for tests.
        data_dir: Keep queues in ``<data_dir>/servicebus-emulator.sqlite3`` so that they
            survive restarts and crashes (see :mod:`emulator.store`), with the entities the
            administration API created and the TLS certificate; ``None`` keeps them in
            memory only (the certificate then goes to a temporary directory).
        durability: ``"full"`` (fsync per commit) or ``"normal"``; only with ``data_dir``.
        limits: Protection against misbehaving clients (frame size, timeouts).

    Use :meth:`start` / :meth:`stop`, or the instance as a context manager.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        key_name: str = DEFAULT_KEY_NAME,
        key: str = DEFAULT_KEY,
        clock: Callable[[], float] = time.time,
        data_dir: str | os.PathLike[str] | None = None,
        durability: Literal["full", "normal"] = "full",
        limits: ServerLimits | None = None,
    ) -> None:
        self._config = config
        self._data_dir = data_dir
        self._durability: Literal["full", "normal"] = durability
        self._limits = limits
        self._host = host
        self._requested_port = port
        self._key_name = key_name
        self._key = key
        self._clock = clock
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._injector: Any = None
        self._failure: BaseException | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._admin: AdminServer | None = None
        self._ca_file: Path | None = None
        self._temp_dir: str | None = None
        self.handler: EmulatorHandler | None = None

    @property
    def host(self) -> str:
        """Host for clients (``127.0.0.1`` when listening on all interfaces)."""
        return "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host

    @property
    def port(self) -> int:
        """The bound port. Raises ``RuntimeError`` before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def connection_string(self) -> str:
        """``Endpoint=sb://host:port;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true``."""
        return connection_string(self.host, self.port, self._key_name, self._key)

    @property
    def ca_file(self) -> Path:
        """The emulator's self-signed certificate (PEM): pass it to
        ``ServiceBusAdministrationClient.from_connection_string(..., connection_verify=...)``.
        Raises ``RuntimeError`` before :meth:`start`."""
        if self._ca_file is None:
            raise RuntimeError("the emulator is not started")
        return self._ca_file

    @property
    def failure(self) -> BaseException | None:
        """The exception that ended the reactor thread, if any."""
        return self._failure

    def start(self) -> None:
        """Bind the port and start serving on a daemon thread.

        Raises:
            OSError: the address cannot be bound (e.g. port in use), or the data directory
                cannot be created.
            sqlite3.Error: the data directory holds an unreadable store.
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")

        def namespace_factory(
            on_available: Callable[[Entity], None],
            on_session_lost: Callable[[Entity, SessionInfo, object], None],
        ) -> Namespace:
            return Namespace(self._config, on_available, on_session_lost, clock=self._clock)

        handler = EmulatorHandler(
            namespace_factory,
            SasValidator(self._key_name, self._key),
            clock=self._clock,
            limits=self._limits,
        )
        if self._data_dir is not None:
            cert_dir: str | os.PathLike[str] = self._data_dir
        else:
            cert_dir = self._temp_dir = tempfile.mkdtemp(prefix="servicebus-emulator-")
        cert_file, key_file = ensure_certificate(cert_dir, [self.host])
        self._ca_file = cert_file
        if self._data_dir is not None:
            store = SqliteStore(self._data_dir, durability=self._durability)
            try:
                apply_definitions(handler.namespace, store.load_definitions())
                restored = store.load(handler.namespace, self._clock())
            except BaseException:
                store.close()
                raise
            handler.store = store
            _log.info("restored %d message(s) from %s", restored, store.path)
        operations = AdminOperations(
            handler.namespace, handler.store, handler.close_entity_links, self._clock
        )
        self._admin = AdminServer(
            cert_file,
            key_file,
            lambda request: self._admin_call(operations, request),
            SasValidator(self._key_name, self._key),
            self._clock,
        )
        container = Container(handler)
        container.container_id = "servicebus-emulator"
        try:
            acceptor = container.acceptor(self._host, str(self._requested_port))
        except BaseException:
            if handler.store is not None:
                handler.store.close()
            raise
        # proton's Acceptor does not expose its socket; its selectable delegates
        # getsockname() to it, which is how we learn the port picked for port 0.
        self._port = int(acceptor._selectable.getsockname()[1])
        handler.bind(container, acceptor, tls_handoff=self._admin.adopt)
        injector = EventInjector()
        container.selectable(injector)
        self._injector = injector
        self.handler = handler
        self._thread = threading.Thread(
            target=self._run,
            args=(container,),
            name=f"servicebus-emulator:{self._port}",
            daemon=True,
        )
        self._thread.start()
        _log.info(
            "listening on %s:%d with %d queue(s) and %d topic(s)",
            self._host,
            self._port,
            len(self._config.queues),
            len(self._config.topics),
        )

    def call_on_reactor(self, function: Callable[[], _T], timeout: float = 30.0) -> _T:
        """Run ``function`` on the reactor thread and return its result once the changes it
        made are durable (any thread but the reactor's).

        Raises:
            TimeoutError: the reactor did not answer within ``timeout`` seconds (stopped).
            Exception: whatever ``function`` raised.
        """
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        with self._lock:
            if self._stopped.is_set() or self._injector is None:
                raise TimeoutError("the emulator is not running")
            self._injector.trigger(
                ApplicationEvent("emulator_call", subject=ReactorCall(function, future))
            )
        return future.result(timeout)

    def _admin_call(self, operations: AdminOperations, request: AdminRequest) -> AdminResponse:
        try:
            return self.call_on_reactor(
                lambda: operations.handle(request), timeout=_REACTOR_CALL_TIMEOUT
            )
        except TimeoutError:
            text = "The emulator is stopping or did not answer in time."
            return AdminResponse(503, error_body(503, text), "application/xml")

    def _run(self, container: Any) -> None:
        try:
            container.run()
        except BaseException as exc:  # keep it for wait()/stop() callers
            self._failure = exc
            _log.exception("the emulator reactor stopped with an error")
        finally:
            if self.handler is not None and self.handler.store is not None:
                self.handler.store.close()
            with self._lock:
                self._stopped.set()
                # EventInjector never closes its pipe; nothing uses it once the reactor is gone.
                for fd in self._injector.pipe:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def stop(self, timeout: float = 5.0) -> None:
        """Close all connections and stop the reactor thread (waits up to ``timeout`` s).

        Safe to call from any thread, more than once, and after a failure.
        """
        if self._admin is not None:
            self._admin.close()
        if self._thread is not None and not self._stopped.is_set():
            with self._lock:
                if not self._stopped.is_set():
                    self._injector.trigger(ApplicationEvent("emulator_stop"))
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.warning("the emulator did not stop within %.1f s", timeout)
                return
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the reactor thread ends; ``True`` if it did within ``timeout``."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
