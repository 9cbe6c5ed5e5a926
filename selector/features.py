"""Decode + encode once per (file content, encoder, frames, resolution); bounded LRU cache in memory."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .encoders import load_encoder
from .limits import check
from .video import Clip, read_clip

__all__ = ["file_digest", "FeatureCache", "Features", "extract", "CACHE"]


def file_digest(path: str | os.PathLike[str]) -> str:
    """blake2b of the file's bytes: the same content under another name hits the same cache entry.
    Remembered per (path, size, mtime), so slider moves do not re-read a large upload."""
    st = os.stat(path)
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

    @property
    def nbytes(self) -> int:
        return self.tokens.numel() * self.tokens.element_size() + self.clip.frames.nbytes


class FeatureCache:
    """Least-recently-used map bounded by bytes; safe to share between threads."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._d: OrderedDict[tuple, Features] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple) -> Features | None:
        with self._lock:
            f = self._d.get(key)
            if f is not None:
                self._d.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return f

    def put(self, key: tuple, value: Features) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > 1 and self.nbytes > self.max_bytes:
                self._d.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self._d.values())

    def __len__(self) -> int:
        return len(self._d)


CACHE = FeatureCache(int(float(os.environ.get("ENTROPY_SELECT_CACHE_MB", "1024")) * 2**20))


def extract(
    path: str | os.PathLike[str],
    encoder: str | None = None,
    num_frames: int = 16,
    cache: FeatureCache | None = CACHE,
    progress: Callable[[float, str], None] | None = None,
) -> Features:
    """Frames and token grid of a video, from the cache when this content was seen before."""
    import time

    enc = load_encoder(encoder)
    digest = file_digest(path)
    key = (digest, enc.name, num_frames, enc.image_size)
    hit = cache.get(key) if cache is not None else None
    if hit is not None:
        return dataclasses.replace(hit, from_cache=True)
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
    feats = Features(clip, tokens, enc.name, digest, (time.perf_counter() - t0) * 1e3)
    if cache is not None:
        cache.put(key, feats)
    return feats
