"""FastAPI dependencies: the process's publisher and settings, as ``Annotated`` types.

Routes (ours and a library user's) take :data:`EventPublisherDep` / :data:`SettingsDep`;
the lifespan (:func:`producer.bootstrap.open_event_publisher`) sets what they return.
"""

from typing import Annotated

from fastapi import Depends, Request

from producer.publisher import EventPublisher
from producer.settings import ProducerSettings


async def get_event_publisher(request: Request) -> EventPublisher:
    """FastAPI dependency: the publisher stored in ``app.state.event_publisher``.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hop per request for a dictionary lookup.

    Raises:
        RuntimeError: the application's lifespan did not set it.
    """
    publisher = getattr(request.app.state, "event_publisher", None)
    if not isinstance(publisher, EventPublisher):
        raise RuntimeError(
            "app.state.event_publisher is not set: enter open_event_publisher() in the lifespan"
        )
    return publisher


EventPublisherDep = Annotated[EventPublisher, Depends(get_event_publisher)]
"""Annotate a route parameter with this to receive the process's :class:`EventPublisher`."""

PublisherDep = EventPublisherDep
"""Short name used by this package's routes."""


async def get_settings(request: Request) -> ProducerSettings:
    """The app's settings (``app.state.settings``)."""
    settings: ProducerSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ProducerSettings, Depends(get_settings)]
