"""The worker runtime: receivers, concurrency, lock renewal, settlement, shutdown.

* :mod:`consumer.runtime.channel` -- one SDK receiver/sender with all calls serialised
  (the SDK's clients are not coroutine-safe) and recreation on link loss or silence.
* :mod:`consumer.runtime.processor` -- per queue: receive, run handlers concurrently,
  renew locks, apply the retry ladder, settle.
* :mod:`consumer.runtime.worker` -- all queues, graceful shutdown within one deadline.
* :mod:`consumer.runtime.entities` -- do the queues exist (start-up check, ``/readyz``).
"""
