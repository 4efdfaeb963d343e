"""An orders service that embeds the producer: events committed with the app's own data.

``POST /orders`` inserts an order and its audit event **in one transaction**: both are
committed, or neither (a duplicate order id rolls back the order *and* its event, so no
audit event is ever published for an order that does not exist). After the commit the
event is published to Service Bus in the background; if that fails, the relay publishes it
later. ``POST /orders/{order_id}/reminders`` shows the simpler form: a notification
committed in the producer's own transaction, published after the response, optionally
scheduled (``deliver_at``).

The outbox lives in the application's database. On SQLite the application creates its
engine with :func:`producer.create_outbox_engine` (``BEGIN IMMEDIATE`` transactions, WAL);
on PostgreSQL any ``postgresql+asyncpg`` engine works. The producer's migrations keep their
own version table (``producer_alembic_version``), so they coexist with the application's.

Run it (the emulator prints the connection string)::

    python -m emulator --config config/servicebus.json --port 5672 &
    export PRODUCER_SERVICEBUS_CONNECTION_STRING='Endpoint=sb://127.0.0.1:5672;...'
    export PRODUCER_DATABASE_URL=sqlite+aiosqlite:///orders.db
    uvicorn --factory examples.orders_app:create_orders_app --port 8080
    curl -X POST localhost:8080/orders -H 'content-type: application/json' \\
        -d '{"order_id": "ORD-1", "customer_id": "c-7", "amount_cents": 4200}'
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, status
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import DateTime, Integer, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from contracts import Actor, AuditEvent, NotificationEvent, Resource
from producer import (
    EventPublisherDep,
    ProducerSettings,
    create_outbox_engine,
    open_event_publisher,
)


class Base(DeclarativeBase):
    """The application's own tables (not the producer's)."""


class Order(Base):
    """An order row."""

    __tablename__ = "example_orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    amount_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NewOrder(BaseModel):
    """Body of ``POST /orders``; the client chooses the order id (safe to retry)."""

    order_id: str = Field(min_length=1, max_length=64, pattern=r"^\S+$")
    customer_id: str = Field(min_length=1, max_length=64, pattern=r"^\S+$")
    amount_cents: int = Field(gt=0)


class OrderCreated(BaseModel):
    """The created order and the id of its audit event."""

    order_id: str
    audit_event_id: str


class NewReminder(BaseModel):
    """Body of ``POST /orders/{order_id}/reminders``."""

    email: EmailStr
    deliver_at: datetime | None = None


class ReminderAccepted(BaseModel):
    """The id of the accepted notification."""

    notification_id: str


def create_orders_app(settings: ProducerSettings | None = None) -> FastAPI:
    """The example app. ``settings`` default to ``ProducerSettings()`` (``PRODUCER_*``)."""
    resolved = settings if settings is not None else ProducerSettings()
    engine = create_outbox_engine(resolved.database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:  # a real app runs its own Alembic here
            await connection.run_sync(Base.metadata.create_all)
        try:
            async with open_event_publisher(resolved, engine=engine) as publisher:
                app.state.event_publisher = publisher
                yield
        finally:
            await engine.dispose()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    session_dep = Annotated[AsyncSession, Depends(get_session)]
    app = FastAPI(title="Orders (producer library example)", lifespan=lifespan)

    @app.post("/orders", status_code=status.HTTP_201_CREATED)
    async def create_order(
        body: NewOrder, session: session_dep, publisher: EventPublisherDep
    ) -> OrderCreated:
        """Insert the order and its audit event in one transaction."""
        now = datetime.now(UTC)
        try:
            async with session.begin():
                session.add(
                    Order(
                        id=body.order_id,
                        customer_id=body.customer_id,
                        amount_cents=body.amount_cents,
                        created_at=now,
                    )
                )
                accepted = await publisher.publish(
                    AuditEvent(
                        actor=Actor(id=body.customer_id),
                        action="order.create",
                        resource=Resource(type="order", id=body.order_id),
                        outcome="success",
                        occurred_at=now,
                        details={"amount_cents": body.amount_cents},
                    ),
                    session=session,
                    source="/examples/orders",
                )
        except IntegrityError:  # the order exists: order and event were both rolled back
            raise HTTPException(409, f"order {body.order_id} already exists") from None
        return OrderCreated(order_id=body.order_id, audit_event_id=accepted.id)

    @app.post("/orders/{order_id}/reminders", status_code=status.HTTP_202_ACCEPTED)
    async def remind(
        order_id: str,
        body: NewReminder,
        background: BackgroundTasks,
        publisher: EventPublisherDep,
    ) -> ReminderAccepted:
        """Commit a reminder e-mail notification; it is published after the response."""
        accepted = await publisher.publish(
            NotificationEvent(
                channel="email",
                recipient=body.email,
                subject=f"Your order {order_id}",
                body=f"A reminder about order {order_id}.",
                deliver_at=body.deliver_at,
            ),
            background=background,
            source="/examples/orders",
        )
        return ReminderAccepted(notification_id=accepted.id)

    return app
