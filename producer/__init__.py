"""FastAPI producer: accepts audit and notification events and publishes them to Service Bus.

As a service: ``python -m producer`` (see :mod:`producer.__main__`). As a library in your
own FastAPI app: :func:`open_event_publisher` in the lifespan and
:data:`EventPublisherDep` in routes (see ``examples/orders_app.py``).
"""

from producer.api.deps import EventPublisherDep, get_event_publisher
from producer.app import create_app
from producer.bootstrap import open_event_publisher
from producer.outbox.database import create_outbox_engine, run_migrations
from producer.publisher import AcceptedEvent, EventPublisher, Submission
from producer.settings import ProducerSettings

__all__ = [
    "AcceptedEvent",
    "EventPublisher",
    "EventPublisherDep",
    "ProducerSettings",
    "Submission",
    "create_app",
    "create_outbox_engine",
    "get_event_publisher",
    "open_event_publisher",
    "run_migrations",
]
