"""Short pauses of the garbage collector: what start-up built is frozen out of its reach.

A full (generation 2) collection walks every container object alive: with the modules, the
catalogue index and jieba's dictionary loaded, ~250,000 objects and 100-150 ms of a blocked
event loop, a few times a minute under load (bench/wechat.py: most of the p99 answer time).
Once the start-up work is done, one collection and `gc.freeze()` move those objects to the
permanent generation, so later full collections only walk what came after (~7 ms). Frozen
objects are still freed by reference counting; only cycles among them are never collected,
and start-up objects live as long as the process anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable

log = logging.getLogger(__name__)

_frozen = False
_tasks: set[asyncio.Task] = set()


def freeze_start_up() -> bool:
    """Collect once and freeze every object alive now; once per process (True if it froze)."""
    global _frozen
    if _frozen:
        return False
    _frozen = True
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info(
        "start-up heap frozen: %s objects in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )
    return True


def freeze_after(warm_up: Awaitable) -> asyncio.Task:
    """`freeze_start_up` once `warm_up` (the background start-up work) is done, whatever its
    outcome; nothing when it is cancelled (the app stopped first). The task that does it."""

    async def wait_then_freeze() -> None:
        with contextlib.suppress(Exception):
            await warm_up
        freeze_start_up()

    task = asyncio.get_running_loop().create_task(wait_then_freeze(), name="freeze-heap")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task
