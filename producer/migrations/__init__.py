"""Alembic migrations of the producer's outbox tables (version table ``producer_alembic_version``).

Apply with ``python -m producer migrate`` or let the app do it at start-up
(``PRODUCER_MIGRATE_ON_STARTUP``, default true). To write a new revision after changing
``producer/outbox/models.py``::

    alembic -c producer/migrations/alembic.ini -x url=sqlite+aiosqlite:///dev.db upgrade head
    alembic -c producer/migrations/alembic.ini -x url=sqlite+aiosqlite:///dev.db \\
        revision --autogenerate -m "what changed"
"""
