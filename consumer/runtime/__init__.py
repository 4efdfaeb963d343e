"""The worker runtime: receivers, concurrency, lock renewal, settlement, shutdown.

* :mod:`consumer.runtime.pipeline` -- one message's path, top to bottom, as stages:
  telemetry, settle, lock renewal, handler slot, decode, route, retry decision,
  processing deadline, handler.
* :mod:`consumer.runtime.processor` -- per queue: the receive loop (receiver lanes, link
  credit, receiver recycling, reconnects) feeding the pipeline.
* :mod:`consumer.runtime.worker` -- all queues, graceful shutdown within one deadline.
* :mod:`consumer.runtime.channel` -- one SDK receiver/sender with all calls serialised
  (the SDK's clients are not coroutine-safe).
* :mod:`consumer.runtime.lock` -- one timer per message: lock renewal and deadline.
* :mod:`consumer.runtime.settlement` -- settlement calls that never raise; retry copies.
* :mod:`consumer.runtime.config` -- :class:`QueueConfig`.
* :mod:`consumer.runtime.credit` -- link credit held only while receiving.
* :mod:`consumer.runtime.entities` -- do the queues exist (start-up check, ``/readyz``).
"""
