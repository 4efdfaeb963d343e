"""Event handlers, one per kind of effect: audit store, e-mail, webhook.

A handler is an async callable taking the envelope. It returns ``False`` when it skipped
a duplicate (the event id was already applied), and raises ``consumer.errors`` exceptions
to steer the retry ladder. :mod:`consumer.handlers.registry` says which handler (and retry
policy) takes each event type; ``docs/extending.md`` shows how to add one.
"""
