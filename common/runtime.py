"""Process-level tuning shared by the long-running services."""

import asyncio
import gc
from collections.abc import Callable


def freeze_startup_objects() -> None:
    """Keep what start-up allocated out of the cyclic garbage collector's full collections.

    A full (generation 2) collection traverses every tracked object. A started producer or
    consumer holds a great many long-lived ones (modules, pydantic and FastAPI schemas,
    SQLAlchemy metadata, the Service Bus SDK); under load full collections ran every few
    seconds and each stopped the event loop long enough to set the tail of end-to-end
    latency (docs/benchmarks/findings.md §14.17). ``gc.freeze()`` moves them to
    the permanent generation, so later collections traverse only what was allocated after
    (https://docs.python.org/3/library/gc.html#gc.freeze). Call once, when start-up is done;
    frozen objects are never freed, so not from code that runs repeatedly (tests).
    """
    gc.collect()
    gc.freeze()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (not on Windows); ``None``: asyncio's own.

    For :class:`asyncio.Runner`. uvicorn picks uvloop for the producer; the consumer and
    the benchmarks' baselines use the same, so every process runs on the same loop. The
    consumer's CPU goes mostly to the event loop and socket writes (a settlement is one
    AMQP frame), which uvloop implements in C.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
