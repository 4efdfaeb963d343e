"""The consumer's ``GET /status``: counters per queue since the consumer started
(:class:`consumer.runtime.stats.QueueStats`)."""

from typing import Any

import httpx


class ConsumerStatus:
    """Fetches ``/status`` over one HTTP client.

    Args:
        url: The consumer's status URL, e.g. ``http://127.0.0.1:8081/status``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = httpx.AsyncClient(timeout=3.0)

    async def fetch(self) -> dict[str, Any]:
        """The status document.

        Raises:
            httpx.HTTPError: unreachable, or not a 2xx answer.
            ValueError: not a JSON object.
        """
        response = await self._client.get(self.url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("consumer /status is not a JSON object")
        return document

    async def close(self) -> None:
        await self._client.aclose()
