"""The emulator's self-signed TLS certificate for the administration endpoint.

``ServiceBusAdministrationClient`` always speaks ``https://`` (even with
``UseDevelopmentEmulator=true``), so the emulator needs a certificate clients can trust:
it generates one for ``localhost`` and ``127.0.0.1`` (and the host it listens on), valid for
ten years, and writes it where clients pass it as ``connection_verify=<path>``. A data
directory keeps it across restarts, so clients configured once keep working.

Why ``cryptography`` (already required by ``azure-identity``): the standard library can
serve TLS but cannot create a certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CERT_FILE_NAME", "KEY_FILE_NAME", "ensure_certificate"]

#: The certificate (PEM) clients pass as ``connection_verify``.
CERT_FILE_NAME = "emulator-cert.pem"
#: Its private key (PEM, owner-readable only).
KEY_FILE_NAME = "emulator-key.pem"
_VALIDITY = datetime.timedelta(days=3650)
#: A kept certificate closer than this to expiry is replaced.
_RENEW_BEFORE = datetime.timedelta(days=30)


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", *hosts]):
        if host in ("", "0.0.0.0"):
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _covers(cert: x509.Certificate, hosts: list[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    now = datetime.datetime.now(datetime.UTC)
    return all(name in san for name in _names(hosts)) and (
        cert.not_valid_after_utc - now > _RENEW_BEFORE
    )


def _create(hosts: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "servicebus-emulator")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        # Its own trust anchor: clients pass this file as their CA bundle.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(directory: str | os.PathLike[str], hosts: list[str]) -> tuple[Path, Path]:
    """The certificate and key files in ``directory``, created unless a kept pair already
    covers ``hosts`` (plus ``localhost`` and ``127.0.0.1``) and is not about to expire.

    Returns:
        ``(certificate path, private key path)``.

    Raises:
        OSError: the directory or files cannot be written.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CERT_FILE_NAME, folder / KEY_FILE_NAME
    if cert_path.exists() and key_path.exists():
        try:
            if _covers(x509.load_pem_x509_certificate(cert_path.read_bytes()), hosts):
                return cert_path, key_path
        except ValueError:
            pass  # unreadable: replaced below
    cert_pem, key_pem = _create(hosts)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(key_pem)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path
