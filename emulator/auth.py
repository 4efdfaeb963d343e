"""Shared access signature (SAS) validation for CBS ``put-token``.

A SAS token is ``SharedAccessSignature sr=<url-encoded resource URI>&sig=<url-encoded
base64 HMAC-SHA256>&se=<expiry, seconds since the epoch>&skn=<key name>``; the signature is
over ``<sr as it appears in the token>\\n<se>`` with the shared access key's UTF-8 bytes.
See https://learn.microsoft.com/azure/service-bus-messaging/service-bus-sas and
https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-protocol-guide#claims-based-authorization.

A token grants access to its resource URI and everything below it (a namespace token covers
every queue).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_plus, urlsplit

from emulator.errors import UnauthorizedError

__all__ = ["ConnectionGrants", "Grant", "SasValidator"]

_PREFIX = "SharedAccessSignature "


def _scope(uri: str) -> tuple[str, str]:
    """``(host without port, lower-cased path without slashes)`` of a resource URI."""
    parts = urlsplit(uri if "://" in uri else "sb://" + uri)
    return (parts.hostname or "").lower(), unquote(parts.path).strip("/").lower()


@dataclass(frozen=True, slots=True)
class Grant:
    """Access granted by one accepted token.

    Attributes:
        host: Lower-cased host of the token's resource URI.
        path: Lower-cased entity path prefix the token covers (``""`` = whole namespace).
        expires_at: Token expiry, seconds since the epoch.
    """

    host: str
    path: str
    expires_at: float

    def covers(self, entity_path: str, now: float) -> bool:
        """Whether this grant is unexpired at ``now`` and covers ``entity_path``."""
        if now >= self.expires_at:
            return False
        path = entity_path.strip("/").lower()
        return not self.path or path == self.path or path.startswith(self.path + "/")


class SasValidator:
    """Checks SAS tokens against the configured key.

    Args:
        key_name: ``SharedAccessKeyName`` the token's ``skn`` must match.
        key: ``SharedAccessKey``, used as UTF-8 bytes for the HMAC.
    """

    def __init__(self, key_name: str, key: str) -> None:
        self._key_name = key_name
        self._key = key.encode("utf-8")

    def validate(self, token: str, audience: str, now: float) -> Grant:
        """Validate ``token`` presented for ``audience`` (the CBS ``name`` property).

        Returns:
            The access the token grants.

        Raises:
            UnauthorizedError: malformed token, wrong key name or signature, expired, or the
                token's resource does not cover ``audience``.
        """
        if not token.startswith(_PREFIX):
            raise UnauthorizedError("InvalidSignature: the token is not a SharedAccessSignature")
        fields: dict[str, str] = {}
        for pair in token[len(_PREFIX) :].split("&"):
            key, sep, value = pair.partition("=")
            if not sep:
                raise UnauthorizedError(f"InvalidSignature: malformed token field {key!r}")
            fields[key] = value
        try:
            raw_resource, signature, expiry_text = fields["sr"], fields["sig"], fields["se"]
        except KeyError as missing:
            raise UnauthorizedError(f"InvalidSignature: token lacks {missing.args[0]!r}") from None
        key_name = unquote_plus(fields.get("skn", ""))
        if key_name != self._key_name:
            raise UnauthorizedError(f"InvalidSignature: unknown key name {key_name!r}")
        try:
            expiry = int(expiry_text)
        except ValueError:
            raise UnauthorizedError("InvalidSignature: 'se' is not an integer") from None
        expected = base64.b64encode(
            hmac.new(self._key, f"{raw_resource}\n{expiry}".encode(), hashlib.sha256).digest()
        )
        if not hmac.compare_digest(expected, unquote_plus(signature).encode("ascii", "replace")):
            raise UnauthorizedError("InvalidSignature: the token signature is not valid")
        if expiry <= now:
            raise UnauthorizedError("ExpiredToken: the token has expired")
        host, path = _scope(unquote_plus(raw_resource))
        audience_host, audience_path = _scope(audience)
        grant = Grant(host=host, path=path, expires_at=float(expiry))
        if audience_host and host and audience_host != host:
            raise UnauthorizedError(
                f"InvalidAudience: token is for host {host!r}, not {audience_host!r}"
            )
        if not grant.covers(audience_path, now):
            raise UnauthorizedError(
                f"InvalidAudience: token for {path or '/'!r} does not cover {audience_path!r}"
            )
        return grant


@dataclass(slots=True)
class ConnectionGrants:
    """The tokens accepted on one AMQP connection."""

    grants: list[Grant] = field(default_factory=list)

    def add(self, grant: Grant) -> None:
        """Remember an accepted token, replacing an earlier one for the same resource (a
        client refreshing its token, or one putting tokens in a loop, keeps one each)."""
        self.grants[:] = [g for g in self.grants if (g.host, g.path) != (grant.host, grant.path)]
        self.grants.append(grant)

    def require(self, entity_path: str, now: float) -> None:
        """Check that some unexpired token covers ``entity_path``.

        Raises:
            UnauthorizedError: if none does.
        """
        if not any(grant.covers(entity_path, now) for grant in self.grants):
            raise UnauthorizedError(
                f"Unauthorized access to {entity_path!r}: put a valid token on $cbs first"
            )
