"""The consumer's own database: audit chain, idempotency inbox, delivery records and
outcomes per minute.

One SQLAlchemy async engine per store URL (SQLite file by default, PostgreSQL through
asyncpg by URL); the schema is managed by Alembic (``consumer/migrations``, version table
``consumer_alembic_version`` so a database shared with the producer keeps two histories).
"""
