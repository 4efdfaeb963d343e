"""Dependencies shared by the v1 routes."""

from typing import Annotated

from fastapi import Depends, Request

from producer.publisher import EventPublisher, get_event_publisher
from producer.settings import ProducerSettings

PublisherDep = Annotated[EventPublisher, Depends(get_event_publisher)]


async def get_settings(request: Request) -> ProducerSettings:
    """The app's settings (``app.state.settings``)."""
    settings: ProducerSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[ProducerSettings, Depends(get_settings)]
