"""Webhook notifications: a signed JSON POST over HTTPS (httpx).

The body is ``{"id", "type", "timestamp", "data"}`` (Standard Webhooks payload shape),
``data`` being the notification; headers ``webhook-id`` (the event id), ``webhook-timestamp``
and ``webhook-signature`` (see :mod:`consumer.signing`; receivers verify with
:func:`consumer.signing.verify_signature` or the ``standardwebhooks`` library).

Responses: 2xx delivered; 408, 425, 429 and 5xx transient (``Retry-After`` honoured as
the earliest retry); any other status (3xx redirects are not followed, 4xx) is permanent:
``RecipientRejected``. Timeouts and connection errors are transient.

URLs must be ``https`` and must not resolve to loopback, private, link-local or other
non-global addresses (server-side request forgery), unless settings allow it for tests.
The check resolves the host before the request, so it does not defend against DNS
rebinding; put an egress proxy in front for that.
"""

import asyncio
import ipaddress
import json
import logging
import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from consumer.errors import ConsumerDeadLetterReason, PermanentError, TransientError
from consumer.signing import signed_headers
from contracts import DeadLetterReason, NotificationEnvelope

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429})


class WebhookSender:
    """POSTs signed notifications.

    Args:
        client: A long-lived ``httpx.AsyncClient`` (its timeout applies); ``None`` only
            with ``dry_run``.
        secret: Signing secret (``whsec_<base64>`` or a plain string); ``None`` only with
            ``dry_run`` (then the request is not signed).
        allow_http: Accept ``http://`` URLs.
        allow_private_networks: Accept targets in non-global address ranges.
        dry_run: Check the target and build the signed request exactly as for sending,
            and stop before the network: the ``log`` delivery mode. A host name is not
            resolved (that would be network traffic), so only IP-literal hosts get the
            address check.

    Raises:
        ValueError: ``client`` or ``secret`` is missing without ``dry_run``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None,
        secret: str | None,
        *,
        allow_http: bool = False,
        allow_private_networks: bool = False,
        dry_run: bool = False,
    ) -> None:
        if not dry_run and (client is None or secret is None):
            raise ValueError("a webhook sender needs an HTTP client and a secret to send")
        self._client = client
        self._secret = secret
        self._allow_http = allow_http
        self._allow_private = allow_private_networks
        self._dry_run = dry_run

    def payload(self, envelope: NotificationEnvelope) -> bytes:
        return json.dumps(
            {
                "id": envelope.id,
                "type": envelope.type,
                "timestamp": envelope.time.isoformat(),
                "data": envelope.data.model_dump(mode="json", exclude_none=True),
            },
            separators=(",", ":"),
        ).encode()

    async def __call__(self, envelope: NotificationEnvelope) -> None:
        """POST the notification (or, with ``dry_run``, only check and build it).

        Raises:
            PermanentError: ``WebhookUrlForbidden`` or ``RecipientRejected``.
            TransientError: timeouts, connection errors, 408/425/429/5xx.
        """
        url = envelope.data.recipient
        await self._check_target(url)
        body = self.payload(envelope)
        headers = {"content-type": "application/json"}
        if self._secret is not None:
            headers.update(signed_headers(envelope.id, body, self._secret))
        if self._client is None or self._dry_run:
            logger.debug("delivery mode log: webhook %s built, not sent", envelope.id)
            return
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(f"webhook timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook request failed: {exc!r}") from exc
        status = response.status_code
        if 200 <= status < 300:
            logger.info("webhook %s delivered to %s (%d)", envelope.id, url, status)
            return
        if status >= 500 or status in TRANSIENT_STATUS:
            raise TransientError(f"webhook answered {status}", retry_after=_retry_after(response))
        raise PermanentError(
            DeadLetterReason.RECIPIENT_REJECTED, f"webhook {url} answered {status}"
        )

    async def _check_target(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self._allow_http and parts.scheme == "http"):
            raise PermanentError(
                ConsumerDeadLetterReason.WEBHOOK_URL_FORBIDDEN, f"{url}: only https is allowed"
            )
        if self._allow_private or parts.hostname is None:
            return
        if self._dry_run and not _is_ip_literal(parts.hostname):
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise TransientError(f"cannot resolve {parts.hostname}: {exc}") from exc
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                raise PermanentError(
                    ConsumerDeadLetterReason.WEBHOOK_URL_FORBIDDEN,
                    f"{parts.hostname} resolves to non-public address {address}",
                )


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
