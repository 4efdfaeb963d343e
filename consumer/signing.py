"""Webhook signatures in the Standard Webhooks scheme (https://www.standardwebhooks.com/).

The sender adds three headers:

* ``webhook-id`` -- the event id; the same on every retry, so receivers can dedupe;
* ``webhook-timestamp`` -- integer seconds since the Unix epoch (UTC) when signed;
* ``webhook-signature`` -- ``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``
  (space-separated when several keys sign, e.g. during rotation).

Receivers call ``verify_signature(body, headers, secret)`` with the raw body bytes, the
request headers and the shared secret; it rejects bad signatures and timestamps more than
:data:`DEFAULT_TOLERANCE` seconds from the receiver's clock (late replays), and returns the
``webhook-id``: a replay inside that window carries the same id, so drop it by id.
Secrets are ``whsec_<base64 key>`` (as Standard Webhooks libraries print them) or any
other string, used as UTF-8 key bytes.
"""

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300
"""Seconds a signature's timestamp may differ from the receiver's clock."""


class WebhookVerificationError(ValueError):
    """The request is not a valid, fresh, signed webhook (see the message)."""


def secret_key(secret: str | bytes) -> bytes:
    """Key bytes of a secret: base64-decoded after a ``whsec_`` prefix, else UTF-8."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(webhook_id: str, timestamp: int, body: bytes, secret: str | bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one key."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    webhook_id: str, body: bytes, secret: str | bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers for ``body``; ``timestamp`` defaults to now (Unix seconds)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(webhook_id, stamp, body, secret),
    }


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes | list[str | bytes],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a received webhook.

    Args:
        body: The raw request body, exactly as received.
        headers: Request headers (names matched case-insensitively).
        secret: The shared secret, or several (any may match: key rotation).
        tolerance: Largest accepted difference, in seconds, between the
            ``webhook-timestamp`` and ``now``.
        now: Unix time to compare with; defaults to the clock.

    Returns:
        The ``webhook-id`` (use it to drop duplicates).

    Raises:
        WebhookVerificationError: a header is missing or malformed, the timestamp is
            outside the tolerance, or no signature matches.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        webhook_id = lowered["webhook-id"]
        stamp_text = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        stamp = int(stamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp outside the tolerance (replay?)")
    secrets = secret if isinstance(secret, list) else [secret]
    expected = [sign(webhook_id, stamp, body, key) for key in secrets]
    for candidate in signatures.split():
        if any(hmac.compare_digest(candidate, good) for good in expected):
            return webhook_id
    raise WebhookVerificationError("no matching signature")
