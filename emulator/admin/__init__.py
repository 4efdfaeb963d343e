"""The administration API (what ``ServiceBusAdministrationClient`` calls), over HTTPS on
the AMQP port.

Parts, one job each: :mod:`~emulator.admin.certificate` (the self-signed certificate),
:mod:`~emulator.admin.server` (TLS and HTTP on adopted connections, SAS check),
:mod:`~emulator.admin.operations` (the operations, on the reactor thread),
:mod:`~emulator.admin.atom` and :mod:`~emulator.admin.requests` (ATOM XML out and in),
:mod:`~emulator.admin.records` (definitions kept with ``--data-dir``).
"""

from emulator.admin.certificate import CERT_FILE_NAME, ensure_certificate
from emulator.admin.operations import AdminOperations, AdminRequest, AdminResponse
from emulator.admin.records import apply_definitions
from emulator.admin.server import AdminServer

__all__ = [
    "CERT_FILE_NAME",
    "AdminOperations",
    "AdminRequest",
    "AdminResponse",
    "AdminServer",
    "apply_definitions",
    "ensure_certificate",
]
