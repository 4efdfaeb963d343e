"""The worker runtime: receivers, concurrency, lock renewal, settlement, shutdown.

* :mod:`consumer.runtime.pipeline` -- one message's path, top to bottom, as stages:
  telemetry, settle, lock renewal, handler slot, decode, route, retry decision,
  processing deadline, handler.
* :mod:`consumer.runtime.context` -- one message's context and the shape of a stage.
* :mod:`consumer.runtime.processor` -- per queue or subscription: the receive loop
  (receiver lanes, link credit, receiver recycling, reconnects) feeding the pipeline.
* :mod:`consumer.runtime.sessions` -- per session-enabled source: session lanes, in
  order within a session, the session lock renewed, idle sessions released.
* :mod:`consumer.runtime.redelivery` -- stages of subscriptions and session sources:
  retries held then abandoned (a copy cannot be re-sent there), replay copies for
  another subscription.
* :mod:`consumer.runtime.worker` -- all queues, graceful shutdown within one deadline.
* :mod:`consumer.runtime.channel` -- one SDK receiver/sender with all calls serialised
  (the SDK's clients are not coroutine-safe).
* :mod:`consumer.runtime.lock` -- one timer per message: lock renewal and deadline.
* :mod:`consumer.runtime.settlement` -- settlement calls that never raise; retry copies.
* :mod:`consumer.runtime.config` -- :class:`QueueConfig`.
* :mod:`consumer.runtime.credit` -- link credit held only while receiving.
* :mod:`consumer.runtime.entities` -- entity paths (queue, ``topic/Subscriptions/name``);
  do the sources exist, with the right session mode (start-up check, ``/readyz``).
"""
