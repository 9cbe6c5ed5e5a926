"""The app's pipeline without any UI: video → cached features → selection, with memoized maps. No gradio.

Used by the web app and usable from Python: ``analyze("clip.mp4", Params(retention=0.2))``. A `Service` owns
every cache of the pipeline (features, maps, gradients, thumbnails), each an `LRU`.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .. import SelectorConfig, SelectorError, select_tokens
from ..config import knobs
from ..encoders import default_encoder
from ..features import FeatureCache, Features, cached, extract
from ..lru import LRU
from ..method.pipeline import MAP_FIELDS, Selection
from ..settings import current
from ..video import Note
from .zerogpu import encode_seconds, gpu_task

__all__ = ["Params", "params_class", "Analysis", "Service", "analyze", "latency_rows", "RETENTIONS"]

RETENTIONS = (0.05, 0.1, 0.35, 0.5, 0.9)


def params_class(config_cls: type = SelectorConfig) -> type:
    """The dataclass of everything a user sets: `retention`, every knob of config_cls (from its knob table, with
    its defaults), `num_frames` and `encoder`; its `config()` is the config_cls those knobs make."""
    ks = knobs(config_cls)
    fields = ([("retention", float, field(default=0.35))]
              + [(k.name, Any, field(default=k.default)) for k in ks]
              + [("num_frames", int, field(default=16)), ("encoder", str, field(default_factory=default_encoder))])

    def config(self: Any) -> SelectorConfig:
        return config_cls(**{k.name: getattr(self, k.name) for k in ks})

    cls = dataclasses.make_dataclass("Params", fields, frozen=True, namespace={"config": config})
    cls.__doc__ = ("Everything a user can set: retention, the selector knobs (SelectorConfig's defaults), frames and "
                   "encoder.")
    cls.__module__ = __name__
    return cls


Params = params_class()


@dataclass(frozen=True)
class Analysis:
    features: Features
    selection: Selection
    params: Any  # a Params
    notes: list[Note] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        s = self.selection.summary()
        c = self.features.clip
        s.update(encoder=self.features.encoder, encoder_precision=self.features.precision,
                 encode_ms=round(self.features.encode_ms, 1),
                 features_cached=self.features.from_cache,
                 device=str(self.selection.indices.device), video_digest=self.features.digest,
                 frames=int(c.frames.shape[0]), timestamps=[round(float(x), 3) for x in c.timestamps],
                 params=asdict(self.params), notes=[str(n) for n in self.notes])
        return s


def _check_frames(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n) or not 1 <= n:
        raise SelectorError(f"num_frames must be a whole number >= 1, got {n!r}")
    return int(n)


class Service:
    """The pipeline and its caches: features per (content, encoder, frames), the first Selection per (video, τ,
    windows) whose maps later calls reuse, Ĝ per video (CPU features), thumbnails per video."""

    def __init__(self, max_frames: int | None = None, cache_mb: float | None = None) -> None:
        """max_frames, cache_mb: ENTROPY_SELECT_MAX_FRAMES and _CACHE_MB (`settings`) when not given."""
        s = current()
        self.max_frames = s.max_frames if max_frames is None else max_frames
        self.features = FeatureCache(int((s.cache_mb if cache_mb is None else cache_mb) * 2**20))
        self.maps = LRU(16)
        self.gradients = LRU(16)
        self.thumbs = LRU(8)
        #: decoding + encoding a video not seen yet: the one step of an analysis that asks for a ZeroGPU GPU
        self.encode_features = gpu_task("encode", encode_seconds)(self._encode_features)

    def _encode_features(self, path: str | os.PathLike[str], encoder: str | None, num_frames: int,
                         progress: Callable[[float, str], None] | None = None) -> Features:
        """Decode + encode into the feature cache; the features come back on the CPU."""
        return extract(path, encoder, num_frames, cache=self.features, progress=progress)

    def analyze(self, path: str | os.PathLike[str], params: Any = None,
                progress: Callable[[float, str], None] | None = None) -> Analysis:
        """Decode + encode (cached by file content) and select. Frames above max_frames are capped, with a note."""
        params = Params() if params is None else params
        notes: list[Note] = []
        n = _check_frames(params.num_frames)
        if n > self.max_frames:
            notes.append(Note(f"frames capped at {self.max_frames} (asked for {n}); set ENTROPY_SELECT_MAX_FRAMES "
                              "to change it", "capped"))
            n = self.max_frames
        cfg = params.config()  # validates before the expensive part
        feats = cached(path, params.encoder, n, self.features) or \
            self.encode_features(path, params.encoder, n, progress)
        if feats.clip.downscaled:
            sh, sw = feats.clip.source_size
            h, w = feats.clip.frames.shape[1:3]
            notes.append(Note(f"frames downscaled on read from {sw}×{sh} to {w}×{h} to bound memory", "downscaled"))
        notes += list(feats.clip.notes)
        sel = self.select_cached(feats, params.retention, cfg)
        return Analysis(feats, sel, replace(params, num_frames=n), notes)

    def select_cached(self, feats: Features, retention: float, cfg: SelectorConfig, timed: bool = True) -> Selection:
        """select_tokens with the maps memoized per (video, τ, k, K_t, k_past): the first call for a key runs the
        fast path (both maps, on the device of the features; on a CPU Ĝ is taken from an earlier call on the same
        video when there is one, since it does not depend on τ or the windows), later ones reuse its Ĥ and Ĝ
        (`reuse`), so moving α, ρ, g or the retention recomputes neither. The time the entropy map took when it
        was computed is reported as `entropy_computed_ms`."""
        key = (feats.digest, feats.encoder, feats.precision, tuple(feats.tokens.shape)) \
            + tuple(getattr(cfg, f) for f in MAP_FIELDS)
        first = self.maps.get(key)
        if first is None:
            cpu = feats.tokens.device.type == "cpu"
            grad = self.gradients.get(key[:4]) if cpu else None
            sel = select_tokens(feats.tokens, retention, cfg, timed=True,
                                gradient_fn=None if grad is None else (lambda _x: grad))
            if cpu and grad is None:  # kept for CPU features only: the GPU path never reads it
                self.gradients.put(key[:4], sel.gradient)
            # without the features (source, rows): the feature cache's byte bound decides how long they live
            first = replace(sel, source=None, rows=None, timings_ms=dict(sel.timings_ms))
            self.maps.put(key, first)
            timings = dict(sel.timings_ms) if timed else {}
        else:
            sel = select_tokens(feats.tokens, retention, cfg, timed=timed, reuse=first)
            timings = dict(sel.timings_ms)
        if timed:
            timings["entropy_computed_ms"] = first.timings_ms.get("entropy", 0.0)
        return replace(sel, timings_ms=timings)

    def thumbnails(self, feats: Features, make: Callable[[np.ndarray], Any]) -> Any:
        """make(frames) for this video, computed once per video and frame count."""
        key = (feats.digest, feats.clip.frames.shape)
        hit = self.thumbs.get(key)
        if hit is None:
            hit = make(feats.clip.frames)
            self.thumbs.put(key, hit)
        return hit


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


_scripts: list[Service] = []  # the service of `analyze`, made at its first call


def analyze(path: str | os.PathLike[str], params: Any = None,
            progress: Callable[[float, str], None] | None = None) -> Analysis:
    """`Service.analyze` for scripts, on a service of their own made at the first call (an app builds its own)."""
    if not _scripts:
        _scripts.append(Service())
    return _scripts[0].analyze(path, params, progress)
