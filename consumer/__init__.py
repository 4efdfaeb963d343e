"""Standalone async consumer: receives events in peek-lock mode and processes them."""
