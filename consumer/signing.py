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

The signatures are computed by the ``standardwebhooks`` library, so a receiver may as well
verify with its ``Webhook(secret).verify(body, headers)`` (for a ``whsec_`` secret; a plain
string secret is ``Webhook(secret.encode())`` there).
"""

import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import standardwebhooks
from standardwebhooks.webhooks import EmptyWebhookSecretError

DEFAULT_TOLERANCE = 300
"""Seconds a signature's timestamp may differ from the receiver's clock (the library's
own fixed tolerance is the same five minutes)."""

_SECRET_PREFIX = "whsec_"


class WebhookVerificationError(standardwebhooks.WebhookVerificationError, ValueError):
    """The request is not a valid, fresh, signed webhook (see the message).

    Also a ``standardwebhooks.WebhookVerificationError``, so receivers catching the
    library's error catch this one too.
    """


def webhook(secret: str | bytes) -> standardwebhooks.Webhook:
    """The library's signer for ``secret``.

    A ``whsec_`` secret is decoded by the library (base64 after the prefix); any other
    string is its UTF-8 bytes. The library would read an unprefixed string as base64 too,
    which would change the key of every plain-string secret in use, so that case is ours.

    Raises:
        ValueError: the key is empty, or a ``whsec_`` secret is not base64.
    """
    key: str | bytes = secret
    if isinstance(secret, str) and not secret.startswith(_SECRET_PREFIX):
        key = secret.encode()
    try:
        return standardwebhooks.Webhook(key)
    except EmptyWebhookSecretError as exc:
        raise ValueError("the webhook secret is empty") from exc


def sign(webhook_id: str, timestamp: int, body: bytes, secret: str | bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one key.

    Args:
        webhook_id: The ``webhook-id`` header (the event id).
        timestamp: The ``webhook-timestamp`` header, Unix seconds.
        body: The request body, exactly as sent.
        secret: ``whsec_<base64>`` or a plain string (UTF-8 key bytes), or the key bytes.

    Raises:
        ValueError: the secret is empty or not valid (see :func:`webhook`).
    """
    return webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, UTC), body)


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

    ``standardwebhooks.Webhook.verify`` takes one secret, a fixed tolerance on the real
    clock and returns the body rather than the id, so the headers and timestamp are
    checked here and only the signatures come from the library.

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
        ValueError: a secret is empty or not valid (see :func:`webhook`).
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
