"""The decoding processes: photos are decoded in a process pool under `gridproof serve`.

One pool per size, started from a fork server that has the photo pipeline imported (not forked
from the server itself, whose threads may hold locks). Without processes (tools, tests, a
1-core machine) photos are decoded in the request's own thread, a few at a time.
"""

import ctypes
import functools
import multiprocessing
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from app.config import Settings
from app.errors import ImageUnreadable

# The module whose functions the pool runs: imported once by the fork server.
PRELOAD = "app.services.photos"
T = TypeVar("T")


def decode(
    settings: Settings, work: Callable[..., T], *args: Any, after_crash: Callable[[], None]
) -> T:
    """`work(*args)` in the process pool when there is one, else in this thread.

    When a decoder dies (a crash, the OOM killer), the pool fails every photo it holds and is
    replaced: each is tried once more on the new pool, and only a photo that stops a decoder
    twice is refused. `after_crash` removes what the stopped decoder may have written."""
    if not settings.image_processes:
        with _decode_slots(settings.image_workers):
            return work(*args)
    for attempt in (1, 2):
        pool = _pool(settings.image_processes)
        try:
            # submit() raises RuntimeError on a pool that is broken or that another thread has
            # just shut down (BrokenProcessPool is one); result() raises BrokenProcessPool.
            return pool.submit(work, *args).result()
        except BrokenProcessPool:
            pass
        except RuntimeError as exc:
            if "shutdown" not in str(exc):
                raise
        _drop_pool(settings.image_processes, pool)
        after_crash()
        if attempt == 2:
            raise ImageUnreadable("the image decoder stopped on this file")
    raise AssertionError("unreachable")


# This server process's decoders, by size: started from a fork server that has this module
# imported (not forked from the server itself, whose threads may hold locks).
_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(processes: int) -> ProcessPoolExecutor:
    with _pools_lock:
        pool = _pools.get(processes)
        if pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([PRELOAD])
            pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_start_decoder)
            _pools[processes] = pool
        return pool


def _drop_pool(processes: int, pool: ProcessPoolExecutor) -> None:
    """Forget a broken pool and wait until its processes have exited: the futures fail before
    the surviving decoders are stopped, and none may still be writing a photo's temp files
    when its request removes them (a few milliseconds, during which no new pool starts)."""
    with _pools_lock:
        if _pools.get(processes) is pool:
            del _pools[processes]
        pool.shutdown(wait=True, cancel_futures=True)


def start_decoders(settings: Settings) -> None:
    """Start the pool's processes now (at the server's startup), not on the first photo."""
    if settings.image_processes:
        pool = _pool(settings.image_processes)
        list(pool.map(_ready, range(settings.image_processes)))


def stop_decoders() -> None:
    """Stop every pool's processes (at the server's shutdown)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(cancel_futures=True)


def _ready(_n: int) -> None:
    return None


def _start_decoder() -> None:
    # Ctrl-C reaches the whole process group: the server shuts the pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_memory()


# glibc's mallopt() parameters (malloc.h) and the largest mmap threshold it accepts on 64 bits.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_freed_memory() -> None:
    """Have glibc keep the memory one photo frees for the next one (in a decoding process).

    A 12 MP photo allocates and frees some 30 MB in pieces of up to 12 MB: the image decoded
    at reduced scale, its resized and rotated copies, the JPEG encoder's buffers. With glibc's
    defaults, pieces that large are mapped for each photo and unmapped after it (and the heap
    is trimmed), so the next photo faults them in again: about 6,600 page faults and 10–20 ms
    of CPU per photo, measured here. Served from the heap and kept there (up to 64 MB free at
    its top), the memory is reused; the peak is the same, the process just does not shrink
    between photos. Only for single-threaded decoding processes: in a threaded process each
    thread's arena would keep its own.
    Nothing is changed where the C library has no mallopt (not glibc).
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)


@functools.cache
def _decode_slots(count: int) -> threading.BoundedSemaphore:
    """How many photos one process decodes at once in its own threads. Decoding is CPU work
    that holds the GIL in part: more at a time only adds contention (the pool scales instead)."""
    return threading.BoundedSemaphore(count)
