"""Reuse the producer tests' database fixtures."""

from tests.producer.conftest import database_url, postgres_url

__all__ = ["database_url", "postgres_url"]
