"""The operations console: a web page to find an event, watch the flow, work the
dead-letter queues and verify the audit chain (``python -m console``).

Server-rendered (FastAPI, Jinja2, a little htmx served from ``static/``), no front-end
build step. It reads the producer's outbox, the consumer's database and Service Bus
(peeks), acts only through :mod:`consumer.dlq` (replay, purge) and
:class:`consumer.stores.audit.AuditStore` (verify, and the audit record of every action).
Modules: :mod:`~console.app` (middleware, error pages), :mod:`~console.auth`,
:mod:`~console.csrf`, :mod:`~console.pages` (one per area), :mod:`~console.sources` (one
per source), :mod:`~console.lookup` (where is event X), :mod:`~console.sampler` and
:mod:`~console.charts` (the flow over time).
"""
