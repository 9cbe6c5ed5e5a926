"""Test media made on the spot with PyAV (and the ffmpeg CLI for rotation metadata)."""

from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np


def pattern(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving gradient + a square: frames that differ, so encoders and selectors have something to see."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (xx * 255 // max(w - 1, 1) + 7 * i + seed) % 256
        out[i, ..., 1] = (yy * 255 // max(h - 1, 1)) % 256
        out[i, ..., 2] = (i * 40) % 256
        s = max(2, min(h, w) // 4)
        y0, x0 = (i * 3) % max(1, h - s), (i * 5) % max(1, w - s)
        out[i, y0 : y0 + s, x0 : x0 + s] = 255
    return out


def write(path: Path, frames: np.ndarray, fps: float = 10, codec: str = "libx264", pix_fmt: str = "yuv420p",
          audio: bool = False, pts: list[int] | None = None, fmt_in: str = "rgb24") -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = pix_fmt
        if pts is not None:
            s.time_base = Fraction(1, 1000)
        a = c.add_stream("aac", rate=16000) if audio else None
        for i, f in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(f if fmt_in == "rgb24" else f[..., 0], format=fmt_in)
            if pts is not None:
                fr.pts = pts[i]
                fr.time_base = Fraction(1, 1000)
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            n = int(16000 * len(frames) / fps)
            _mux_audio(c, a, (np.sin(np.arange(n) / 10) * 3000).astype(np.int16), 16000)
    return path


def _mux_audio(c, stream, samples: np.ndarray, rate: int) -> None:
    import av

    af = av.AudioFrame.from_ndarray(samples[None], format="s16", layout="mono")
    af.sample_rate = rate
    for p in [*stream.encode(af), *stream.encode()]:
        c.mux(p)


def audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as c:
        _mux_audio(c, c.add_stream("pcm_s16le", rate=8000), np.zeros(8000, np.int16), 8000)
    return path


def rotated(path: Path, src: Path, degrees: int = 90) -> Path | None:
    """A copy of src whose stream carries a display-rotation matrix (ffmpeg CLI)."""
    ff = shutil.which("ffmpeg")
    if ff is None:
        return None
    subprocess.run([ff, "-v", "error", "-y", "-i", str(src), "-metadata:s:v:0", f"rotate={degrees}", "-c", "copy",
                    str(path)], check=True)
    return path
