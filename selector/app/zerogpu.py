"""ZeroGPU (a Hugging Face Space lends a GPU per call of a function decorated with `spaces.GPU`, counted against
the visitor's daily quota): what asks for it, and for how long.

Exactly two kinds of work do: decoding + encoding a video whose features are not cached yet ("encode"), and a VLM
answering ("answer": /ask, and the Compare tab's answers per method). Moving a slider, drawing the views and the
Compare methods on cached features run on the CPU and never ask. Each task's `duration` is computed from its
arguments (frames, encoder, model, answer length), so short requests reserve little. Where the `spaces` package is
missing (anywhere but a Space) the functions run as they are; `TASKS` lists what would be decorated either way.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

__all__ = ["TASKS", "gpu_task", "by_signature", "encode_seconds", "answer_seconds", "on_zerogpu"]

#: name → (function, duration function) of every task that asks for the GPU
TASKS: dict[str, tuple[Callable, Callable[..., int]]] = {}


def on_zerogpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (the variable the Space sets)."""
    return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu_task(name: str, duration: Callable[..., int]) -> Callable[[Callable], Callable]:
    """Decorate with `spaces.GPU(duration=duration)` when `spaces` is importable; record it in TASKS."""
    def wrap(fn: Callable) -> Callable:
        try:
            import spaces
        except ImportError:
            decorated = fn
        else:
            decorated = spaces.GPU(duration=duration)(fn)
        TASKS[name] = (decorated, duration)
        return decorated
    return wrap


def by_signature(duration: Callable[..., int], sig: inspect.Signature) -> Callable[..., int]:
    """`duration` called with the named values of a call of a function with signature `sig` (spaces calls the
    duration function with the decorated function's own arguments, positional or by name)."""
    def on_call(*args: Any, **kwargs: Any) -> int:
        values = sig.bind_partial(*args, **kwargs).arguments
        accepted = inspect.signature(duration).parameters
        return duration(**{k: v for k, v in values.items() if k in accepted})
    return on_call


def encode_seconds(path: Any = None, encoder: str | None = None, num_frames: int = 16, *_: Any, **__: Any) -> int:
    """Seconds to reserve for decoding + encoding `num_frames` frames: a fixed 10 s (decoding, moving the encoder
    to the GPU) plus 0.1 s a frame for the offline encoders, 0.3 s a frame for a hub encoder (SigLIP-SO400M at
    384 px is the largest offered); at most 120 s."""
    n = int(num_frames) if isinstance(num_frames, (int, float)) else 16
    per_frame = 0.1 if (encoder or "dinov2-s") in ("dinov2-s", "efficientnet-lite0") else 0.3
    return int(min(120, 10 + per_frame * max(1, n)))


def answer_seconds(num_frames: Any = 16, max_new_tokens: Any = 64, model: Any = "", answers: int = 2) -> int:
    """Seconds to reserve for a VLM answering `answers` times (/ask: all tokens, then the kept ones) on
    `num_frames` frames with up to `max_new_tokens` tokens each: 20 s (loading to the GPU) + 0.2 s a frame +
    0.05 s a token per answer; twice that for a 7B model; at most 300 s."""
    frames = int(num_frames) if isinstance(num_frames, (int, float)) else 16
    tokens = int(max_new_tokens) if isinstance(max_new_tokens, (int, float)) else 64
    scale = 2.0 if "7b" in str(model or "").lower() else 1.0
    return int(min(300, scale * (20 + 0.2 * frames + 0.05 * tokens * max(1, int(answers)))))
