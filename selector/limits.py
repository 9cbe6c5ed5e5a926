"""Per-request limits of the adapters: a time budget that long work checks between its steps, and a bound on
how many videos are decoded at once. Imports the stdlib only.

The budget is cooperative: decoding checks it between frames, encoding between batches, the VLM between stages,
so a request over its limit stops at the next step boundary and the user is told which step it reached.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator

from .settings import current, module_settings

__all__ = ["TimeLimitError", "time_limit", "check", "remaining", "decode_slot"]


class TimeLimitError(ValueError):
    """A request ran past the server's time limit; the message says where it stopped and what to change."""


_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("deadline", default=None)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Work inside this block raises TimeLimitError at its next `check` once `seconds` have passed (None or a
    value <= 0: no limit). Nested blocks keep the earlier deadline."""
    if seconds is None or seconds <= 0:
        yield
        return
    now = time.monotonic()
    outer = _DEADLINE.get()
    end = now + seconds if outer is None else min(outer[0], now + seconds)
    token = _DEADLINE.set((end, seconds if outer is None else outer[1]))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the deadline of the current request (None: no limit)."""
    d = _DEADLINE.get()
    return None if d is None else d[0] - time.monotonic()


def check(stage: str) -> None:
    """Raise TimeLimitError naming `stage` when the current request is past its deadline."""
    d = _DEADLINE.get()
    if d is not None and time.monotonic() > d[0]:
        raise TimeLimitError(f"stopped while {stage}: this server gives a request at most {d[1]:g} s. Try fewer "
                             "frames, a shorter clip or a smaller encoder")


_slots: list[threading.BoundedSemaphore] = []  # made at the first decode, from the settings of that moment
_slots_lock = threading.Lock()


def _decodes() -> threading.BoundedSemaphore:
    """The process's decoding slots: ENTROPY_SELECT_MAX_DECODES videos decoded at the same time (each holds up to
    one full-resolution frame and its sampled frames)."""
    if not _slots:
        with _slots_lock:
            if not _slots:
                _slots.append(threading.BoundedSemaphore(current().max_decodes))
    return _slots[0]


__getattr__ = module_settings(__name__, {"MAX_DECODES": "max_decodes"})  # the setting as it is now


@contextlib.contextmanager
def decode_slot() -> Iterator[None]:
    """Wait for one of the MAX_DECODES decoding slots, within the current request's time limit."""
    slots = _decodes()
    while not slots.acquire(timeout=0.25):
        check("waiting for other uploads to finish decoding")
    try:
        yield
    finally:
        slots.release()
