"""At most a few ledger exports at once, per user and in all: an in-process counter.

An export holds a database connection and a CPU for its whole run (the XLSX one also a scratch
file); a burst of them starves everyone else's requests. The count is per server process (each
replica or `serve` worker has its own): a few at once per process is the point, and in-process
counting frees a slot the moment its export ends or its client goes away, with no lease to
expire after a crash.
"""

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from app.config import Settings
from app.errors import TooManyRequests
from app.models import User

# An export takes seconds; this is when trying again is likely to succeed.
RETRY_AFTER_S = 5

_lock = threading.Lock()
_running: Counter[int] = Counter()


class Slot:
    """One running export; released once, by whichever of close, the end or GC comes first."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self._held = True

    def release(self) -> None:
        with _lock:
            if self._held:
                self._held = False
                _running[self.user_id] -= 1
                if _running[self.user_id] <= 0:
                    del _running[self.user_id]

    def __del__(self) -> None:
        self.release()


def acquire(settings: Settings, user: User) -> Slot:
    """A slot for one export by this user, or too_many_requests when the limits are reached."""
    assert user.id is not None
    with _lock:
        if _running[user.id] >= settings.exports_per_user:
            raise TooManyRequests(
                f"you have {settings.exports_per_user} exports running; wait for one to finish",
                retry_after_s=RETRY_AFTER_S,
            )
        if sum(_running.values()) >= settings.exports_total:
            raise TooManyRequests(
                "the server is busy with other exports; try again shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        _running[user.id] += 1
    return Slot(user.id)


class Held:
    """The chunks of an export, holding its slot until they end or the response is dropped
    (a generator never started would not run its `finally`; this releases on close and GC)."""

    def __init__(self, slot: Slot, chunks: Iterator[bytes]) -> None:
        self.slot = slot
        self.chunks = chunks

    def __iter__(self) -> "Held":
        return self

    def __next__(self) -> bytes:
        try:
            return next(self.chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.slot.release()
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


@contextmanager
def released_on_error(slot: Slot) -> Iterator[Slot]:
    """Hold the slot while an export is prepared; free it at once if preparing fails."""
    try:
        yield slot
    except BaseException:
        slot.release()
        raise


def running() -> int:
    """How many exports run in this process now (for tests and /readyz-like probes)."""
    with _lock:
        return sum(_running.values())
