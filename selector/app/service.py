"""The app's pipeline without any UI: video → cached features → selection, with memoized maps.

Used by app.py (gradio) and usable from Python: ``analyze("clip.mp4", Params(retention=0.2))``.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .. import SelectorConfig, SelectorError, select_tokens
from ..encoders import DEFAULT_ENCODER
from ..features import Features, extract
from ..method.pipeline import MAP_FIELDS, Selection

__all__ = ["Params", "Analysis", "analyze", "latency_rows", "MAX_FRAMES", "RETENTIONS"]

MAX_FRAMES = int(os.environ.get("ENTROPY_SELECT_MAX_FRAMES", "64"))
RETENTIONS = (0.05, 0.1, 0.35, 0.5, 0.9)


_DEFAULT = SelectorConfig()
#: the selector knobs (all of SelectorConfig's; the app's sliders and check box set the first eight, its
#: "Frame budgets" fields the budget knobs q, tau_alloc, min_tokens and max_tokens)
KNOBS = ("alpha", "tau", "window", "temporal_window", "past_window", "grid", "rho", "grid_fusion", "q", "tau_alloc",
         "min_tokens", "max_tokens")


@dataclass(frozen=True)
class Params:
    """Everything a user can set: selector knobs (defaults: SelectorConfig's) plus frames and encoder."""

    retention: float = 0.35
    alpha: float = _DEFAULT.alpha
    tau: float = _DEFAULT.tau
    window: int = _DEFAULT.window
    temporal_window: int = _DEFAULT.temporal_window
    past_window: int = _DEFAULT.past_window
    grid: int = _DEFAULT.grid
    rho: float = _DEFAULT.rho
    grid_fusion: bool = _DEFAULT.grid_fusion
    q: float = _DEFAULT.q
    tau_alloc: float = _DEFAULT.tau_alloc
    min_tokens: int = _DEFAULT.min_tokens
    max_tokens: int | None = _DEFAULT.max_tokens
    num_frames: int = 16
    encoder: str = DEFAULT_ENCODER

    def config(self) -> SelectorConfig:
        return SelectorConfig(**{name: getattr(self, name) for name in KNOBS})


@dataclass(frozen=True)
class Analysis:
    features: Features
    selection: Selection
    params: Params
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        s = self.selection.summary()
        c = self.features.clip
        s.update(encoder=self.features.encoder, encode_ms=round(self.features.encode_ms, 1),
                 features_cached=self.features.from_cache,
                 device=str(self.selection.indices.device), video_digest=self.features.digest,
                 frames=int(c.frames.shape[0]), timestamps=[round(float(x), 3) for x in c.timestamps],
                 params=asdict(self.params), notes=self.notes)
        return s


class _LRU:
    def __init__(self, n: int) -> None:
        self.n, self.d, self.lock = n, OrderedDict[tuple, Any](), threading.Lock()

    def get(self, key: tuple) -> Any:
        with self.lock:
            if key not in self.d:
                return None
            self.d.move_to_end(key)
            return self.d[key]

    def put(self, key: tuple, value: Any) -> None:
        with self.lock:
            self.d[key] = value
            while len(self.d) > self.n:
                self.d.popitem(last=False)


#: per (video, encoder, grid, τ, k, K_t, k_past): the Selection whose maps later calls reuse (its timings say
#: how long the entropy map took)
_MAPS = _LRU(16)
#: per (video, encoder, grid): Ĝ alone, which depends on the features and nothing else. A new τ or window on a
#: CPU computes the entropy map only; on a GPU one fused kernel computes both maps (the gradient is free there)
_GRADIENTS = _LRU(16)


def _check_frames(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or not 1 <= n:
        raise SelectorError(f"num_frames must be a whole number >= 1, got {n!r}")
    return int(n)


def analyze(path: str | os.PathLike[str], params: Params = Params(),
            progress: Callable[[float, str], None] | None = None) -> Analysis:
    """Decode + encode (cached by file content) and select. Frames above MAX_FRAMES are capped, with a note."""
    notes = []
    n = _check_frames(params.num_frames)
    if n > MAX_FRAMES:
        notes.append(f"frames capped at {MAX_FRAMES} (asked for {n}); set ENTROPY_SELECT_MAX_FRAMES to change it")
        n = MAX_FRAMES
    cfg = params.config()  # validates before the expensive part
    feats = extract(path, params.encoder, n, progress=progress)
    if feats.clip.downscaled:
        sh, sw = feats.clip.source_size
        h, w = feats.clip.frames.shape[1:3]
        notes.append(f"frames downscaled on read from {sw}×{sh} to {w}×{h} to bound memory")
    notes += [n for n in feats.clip.notes]
    sel = select_cached(feats, params.retention, cfg)
    return Analysis(feats, sel, Params(**{**asdict(params), "num_frames": n}), notes)


def select_cached(feats: Features, retention: float, cfg: SelectorConfig, timed: bool = True) -> Selection:
    """select_tokens with the maps memoized per (video, τ, k, K_t, k_past): the first call for a key runs the
    fast path (both maps, on the device of the features; on a CPU Ĝ is taken from an earlier call on the same
    video when there is one, since it does not depend on τ or the windows), later ones reuse its Ĥ and Ĝ
    (`reuse`), so moving α, ρ, g or the retention recomputes neither. The time the entropy map took when it
    was computed is reported as `entropy_computed_ms`."""
    key = (feats.digest, feats.encoder, tuple(feats.tokens.shape)) + tuple(getattr(cfg, f) for f in MAP_FIELDS)
    first = _MAPS.get(key)
    if first is None:
        cpu = feats.tokens.device.type == "cpu"
        grad = _GRADIENTS.get(key[:3]) if cpu else None
        sel = select_tokens(feats.tokens, retention, cfg, timed=True,
                            gradient_fn=None if grad is None else (lambda _x: grad))
        if cpu and grad is None:  # kept for CPU features only: the GPU path never reads it
            _GRADIENTS.put(key[:3], sel.gradient)
        # without the features (source, rows): the feature cache's byte bound decides how long they live
        first = replace(sel, source=None, rows=None, timings_ms=dict(sel.timings_ms))
        _MAPS.put(key, first)
        if not timed:
            sel.timings_ms.clear()
    else:
        sel = select_tokens(feats.tokens, retention, cfg, timed=timed, reuse=first)
    ms = first.timings_ms.get("entropy", 0.0)
    if timed:
        sel.timings_ms["entropy_computed_ms"] = ms
    return sel


def latency_rows(feats: Features, cfg: SelectorConfig, retentions: tuple[float, ...] = RETENTIONS,
                 repeats: int = 5) -> list[dict[str, float]]:
    """Full selector time (entropy included, nothing memoized) at several retentions on cached features.
    A retention the frame budgets cannot hold (T·max_tokens < K) is left out; none at all is a SelectorError."""
    rows, refused, warm = [], None, False
    for r in retentions:
        times, kept = [], 0
        try:
            if not warm:  # one warm-up call, at the first retention the budgets can hold
                select_tokens(feats.tokens, r, cfg, timed=False)
                warm = True
            for _ in range(repeats):
                t0 = time.perf_counter()
                sel = select_tokens(feats.tokens, r, cfg, timed=False)
                times.append((time.perf_counter() - t0) * 1e3)
                kept = sel.num_tokens
        except SelectorError as e:  # refused at its first call: no time was taken for it
            refused = e
            continue
        rows.append({"retention": r, "median_ms": statistics.median(times), "min_ms": min(times),
                     "max_ms": max(times), "kept": kept})
    if not rows:
        raise SelectorError(f"no retention of {list(retentions)} can be timed with these frame budgets: {refused}")
    return rows
