"""Decode + encode once per (file content, encoder, frames, resolution); bounded LRU cache in memory."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .encoders import default_encoder, load_encoder
from .limits import check
from .lru import LRU
from .video import Clip, read_clip

__all__ = ["file_digest", "FeatureCache", "Features", "extract"]


def file_digest(path: str | os.PathLike[str]) -> str:
    """blake2b of the file's bytes: the same content under another name hits the same cache entry.
    Remembered per (path, size, mtime), so slider moves do not re-read a large upload. VideoError names a path
    that is missing, a folder or empty."""
    from .video import _check_path

    st = os.stat(_check_path(path))
    return _digest(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Features:
    clip: Clip
    tokens: torch.Tensor  # float32 (T, h, w, D), CPU
    encoder: str
    digest: str
    encode_ms: float
    from_cache: bool = False
    precision: str = "fp32"  # the encoder's arithmetic (`Encoder.precision`)

    @property
    def nbytes(self) -> int:
        return self.tokens.numel() * self.tokens.element_size() + self.clip.frames.nbytes


class FeatureCache(LRU):
    """Features by (content, encoder and its precision, frames, resolution), least recently used dropped beyond
    max_bytes."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes=max_bytes, size=lambda f: f.nbytes)




def cached(path: str | os.PathLike[str], encoder: str | None, num_frames: int, cache: FeatureCache) -> Features | None:
    """The features `extract` would give, when `cache` holds them (nothing decoded or encoded), else None."""
    enc = load_encoder(encoder)
    hit = cache.get((file_digest(path), enc.key, num_frames, enc.image_size))
    return None if hit is None else dataclasses.replace(hit, from_cache=True)


def extract(
    path: str | os.PathLike[str],
    encoder: str | None = None,
    num_frames: int = 16,
    cache: FeatureCache | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> Features:
    """Frames and token grid of a video; from `cache` (e.g. a Service's) when this content was seen before."""
    import time

    hit = cached(path, encoder, num_frames, cache) if cache is not None else None
    if hit is not None:
        return hit
    if progress:
        progress(0.0, f"loading encoder {encoder or default_encoder()}")
    enc = load_encoder(encoder)
    digest = file_digest(path)
    key = (digest, enc.key, num_frames, enc.image_size)
    if progress:
        progress(0.0, "decoding video")
    clip = read_clip(path, num_frames)
    t0 = time.perf_counter()

    def step(done: int, total: int) -> None:
        check(f"encoding frames ({done}/{total} done)")
        if progress:
            progress(done / total, f"encoding frames with {enc.name}: {done}/{total}")

    try:
        tokens = enc.encode(clip.frames, progress=step)
    except torch.cuda.OutOfMemoryError:
        # the GPU is full (other users, a long clip): finish this one on the CPU rather than fail
        torch.cuda.empty_cache()
        if progress:
            progress(0.0, "GPU out of memory: encoding on the CPU instead")
        enc = load_encoder(encoder, "cpu")
        tokens = enc.encode(clip.frames, progress=step)
    feats = Features(clip, tokens, enc.name, digest, (time.perf_counter() - t0) * 1e3, precision=enc.precision)
    if cache is not None:
        cache.put(key, feats)
    return feats
