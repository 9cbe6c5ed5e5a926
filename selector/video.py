"""Video in, uint8 frames out: uniform sampling by seeking, decord first and PyAV as the fallback.

Adapter beside the core: imports numpy, decord and av (lazily), never gradio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .limits import TimeLimitError, check, decode_slot
from .settings import current, module_settings

__all__ = ["VideoError", "Note", "Clip", "read_clip", "read_frames", "sample_indices", "describe", "browser_playable",
           "write_preview", "example_video"]

#: the bounds of `settings` a module attribute reads as they are now: MAX_SIDE (frames whose longer side exceeds it
#: are downscaled on read, aspect kept), MAX_PIXELS (videos whose declared frame size exceeds it are refused before
#: decoding: a decoder holds full frames before they are downscaled; 4096×4096 in 8-bit 4:2:0 is 25 MB a frame),
#: MAX_DECODED_FRAMES (most frames decoded from a stream read straight through, without a duration or index)
__getattr__ = module_settings(__name__, {"MAX_SIDE": "max_side", "MAX_PIXELS": "max_pixels",
                                         "MAX_DECODED_FRAMES": "max_decoded_frames"})


class Note(str):
    """A sentence about how a video was read or analysed, with its kind: what a front end does with a note (a
    pop-up, a line kept in the summary) follows the kind, never the words. Kinds: "decoder" (another decoder read
    it), "short" (fewer frames than asked), "stream_cap" (a stream read up to the frame cap), "seek" (failed seeks),
    "capped" (frames capped by the server), "downscaled" (frames downscaled on read). A str: JSON shows the text."""

    kind: str

    def __new__(cls, text: str, kind: str) -> Note:
        note = super().__new__(cls, text)
        note.kind = kind
        return note


class VideoError(ValueError):
    """A video that cannot be read; the message says what is wrong in words a user can act on."""


@dataclass(frozen=True)
class Clip:
    """Sampled frames and what we know about where they came from."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    timestamps: np.ndarray  # float64 (T,), seconds
    fps: float
    duration: float  # seconds
    source_size: tuple[int, int]  # (height, width) as displayed, before any downscale
    backend: str
    notes: tuple[Note, ...] = field(default=())

    @property
    def downscaled(self) -> bool:
        return self.frames.shape[1:3] != self.source_size


def read_frames(path: str | os.PathLike[str], num_frames: int = 16) -> np.ndarray:
    """uint8 (T, H, W, 3) frames sampled uniformly over the whole video, T = min(num_frames, available)."""
    return read_clip(path, num_frames).frames


def sample_indices(available: int, num_frames: int) -> np.ndarray:
    """Centres of num_frames equal slices of [0, available): uniform over the whole duration.

    >>> sample_indices(100, 4).tolist(), sample_indices(1, 16).tolist()
    ([12, 37, 62, 87], [0])
    """
    t = max(1, min(num_frames, available))
    return np.minimum(((np.arange(t) + 0.5) * available / t).astype(np.int64), available - 1)


def _check_path(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise VideoError(f"expected a path to a video file, got {path!r}")
    p = Path(path)
    if not p.exists():
        raise VideoError(f"no such file: {p}")
    if p.is_dir():
        raise VideoError(f"{p} is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p.name} is empty (0 bytes)")
    return p


def _target_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    s = max(h, w)
    if s <= max_side:
        return h, w
    k = max_side / s
    return max(2, round(h * k) // 2 * 2), max(2, round(w * k) // 2 * 2)


def _probe(p: Path) -> dict[str, float | int]:
    """Open with PyAV to tell apart 'not a video', 'audio only' and friends before decoding."""
    import av

    try:
        with av.open(str(p), metadata_errors="ignore") as c:
            if not c.streams.video:
                kinds = sorted({s.type for s in c.streams})
                what = "audio only" if "audio" in kinds else f"streams: {', '.join(kinds) or 'none'}"
                raise VideoError(f"{p.name} has no video stream ({what})")
            fmt = c.format.name or ""
            if fmt == "image2" or (fmt.endswith("_pipe") and fmt != "gif_pipe"):
                raise VideoError(f"{p.name} is a still image ({fmt.replace('_pipe', '')}), not a video")
            s = c.streams.video[0]
            if s.codec_context is None or not s.codec_context.name:
                raise VideoError(f"{p.name}: the video stream has no known codec")
            fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
            if s.duration and s.time_base:
                dur = float(s.duration * s.time_base)
            elif c.duration:
                dur = c.duration / 1e6
            else:
                dur = 0.0
            h, w = int(s.codec_context.height or 0), int(s.codec_context.width or 0)
            max_pixels = current().max_pixels
            if h * w > max_pixels:
                raise VideoError(f"{p.name} has {w}×{h} frames ({h * w / 1e6:.0f} megapixels); this server decodes "
                                 f"frames of at most {max_pixels / 1e6:.1f} megapixels (e.g. 4096×4096): downscale "
                                 "the video first")
            return {"fps": fps, "duration": dur, "frames": int(s.frames or 0), "height": h, "width": w}
    except VideoError:
        raise
    except av.error.InvalidDataError as e:
        raise VideoError(f"{p.name} is not a video file that can be decoded ({e.strerror or e})") from None
    except av.error.FFmpegError as e:
        raise VideoError(f"{p.name} could not be opened as a video ({e.strerror or e})") from None


def read_clip(path: str | os.PathLike[str], num_frames: int = 16, max_side: int | None = None) -> Clip:
    """Sample `num_frames` frames uniformly over the whole video (seeking, never decoding it all).

    decord is tried first; PyAV takes over when decord is missing or refuses the file. Gray and
    alpha become RGB, rotation metadata is applied, frames larger than `max_side` are downscaled.
    Raises VideoError with a readable message for anything that is not a decodable video.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise VideoError(f"num_frames must be a positive int, got {num_frames!r}")
    p = _check_path(path)
    limit = current().max_side if max_side is None else max_side
    notes: list[Note] = []
    with decode_slot():  # at most limits.MAX_DECODES videos are decoded at once
        info = _probe(p)
        try:
            clip = _read_decord(p, num_frames, limit, info)
        except _Fallback as e:
            notes.append(Note(f"decord: {e}; decoded with PyAV", "decoder"))
            clip = _read_pyav(p, num_frames, limit, info)
    if clip.frames.shape[0] == 0:
        raise VideoError(f"{p.name}: no frame could be decoded")
    if clip.frames.shape[0] < num_frames:
        notes.append(Note(f"the video has {clip.frames.shape[0]} frame(s); {num_frames} were asked for", "short"))
    return Clip(**{**clip.__dict__, "notes": tuple(notes) + clip.notes})


class _Fallback(Exception):
    pass


def _read_decord(p: Path, num_frames: int, max_side: int, info: dict) -> Clip:
    try:
        import decord
    except ImportError:
        raise _Fallback("not installed") from None
    try:
        vr = decord.VideoReader(str(p), ctx=decord.cpu(0), num_threads=2)
        n = len(vr)
        if n < 1:
            raise _Fallback("no frames")
        h, w = vr[0].shape[:2]  # as decord shows it (rotation applied); at most MAX_PIXELS (checked by the probe)
        th, tw = _target_size(h, w, max_side)
        if (th, tw) != (h, w):
            vr = decord.VideoReader(str(p), ctx=decord.cpu(0), width=tw, height=th, num_threads=2)
        idx = sample_indices(n, num_frames)
        parts = []
        for i in range(0, len(idx), 4):  # a few frames at a time: the time limit is checked in between
            check(f"decoding frame {i + 1} of {len(idx)}")
            parts.append(vr.get_batch(idx[i:i + 4].tolist()).asnumpy())
        frames = np.concatenate(parts)
        fps = float(vr.get_avg_fps() or info["fps"])
        try:
            ts = np.asarray(vr.get_frame_timestamp(idx.tolist()))[:, 0].astype(np.float64)
        except Exception:  # timestamps are a nicety; index/fps is a fine estimate
            ts = idx / fps
    except (_Fallback, TimeLimitError):
        raise
    except Exception as e:  # decord raises DECORDError with C++ locations; say it in words
        raise _Fallback(type(e).__name__) from None
    frames = _to_rgb(frames)
    duration = float(info["duration"]) or n / fps
    return Clip(frames, ts, fps, duration, (h, w), "decord")


def _to_rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3], dtype=np.uint8)


def _read_pyav(p: Path, num_frames: int, max_side: int, info: dict) -> Clip:
    import av

    fps = float(info["fps"])
    duration = float(info["duration"])
    total = int(info["frames"]) or max(1, int(round(duration * fps)))
    frames: list[np.ndarray] = []
    stamps: list[float] = []
    errors = 0
    notes: list[Note] = []
    try:
        with av.open(str(p), metadata_errors="ignore") as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            h, w = int(s.codec_context.height), int(s.codec_context.width)
            if not duration or total <= max(num_frames * 4, 300):
                # short or unknown length: count, then decode once keeping only the sampled frames
                frames, stamps, read, capped = _counted_pass(p, num_frames, max_side)
                if capped:
                    notes.append(Note(f"only the first {current().max_decoded_frames} frames were read (the "
                                      "server's cap)", "stream_cap"))
                if not duration and read:
                    duration = read / fps
            else:
                for i, t in enumerate((np.arange(min(num_frames, total)) + 0.5) * duration / min(num_frames, total)):
                    check(f"seeking frame {i + 1} of {min(num_frames, total)}")
                    try:
                        fr = _seek_frame(c, s, float(t))
                    except av.error.FFmpegError:
                        errors += 1
                        continue
                    if fr is not None:
                        frames.append(_frame_rgb(fr, max_side))
                        stamps.append(float(fr.time if fr.time is not None else t))
    except av.error.FFmpegError as e:
        if not frames:
            why = e.strerror or e
            raise VideoError(f"{p.name} is damaged or truncated: no frame could be decoded ({why})") from None
    if not frames:
        raise VideoError(f"{p.name}: no frame could be decoded")
    if errors:
        notes.append(Note(f"{errors} seek(s) failed; the frames around them were used", "seek"))
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:  # resolution changes mid-stream: bring all to the first frame's size
        frames = [_resize(f, frames[0].shape[:2]) for f in frames]
    quarter = frames[0].shape[:2] != _target_size(h, w, max_side)  # rotated by ±90°
    src = (w, h) if quarter else (h, w)
    return Clip(np.stack(frames), np.asarray(stamps), fps, duration or len(frames) / fps, src, "pyav", tuple(notes))


def _counted_pass(p: Path, num_frames: int, max_side: int) -> tuple[list, list, int, bool]:
    """Frames sampled uniformly from a stream whose length is unknown or short, holding at most num_frames frames:
    a first pass counts the video packets (demuxing only, no decoding; at most MAX_DECODED_FRAMES), a second
    decodes up to the last sampled index and keeps only the sampled frames. Returns (frames, timestamps, frames
    in the stream, whether the cap cut the count)."""
    import av

    count, capped = 0, False
    with av.open(str(p), metadata_errors="ignore") as c:
        try:
            for packet in c.demux(c.streams.video[0]):
                if packet.size:
                    count += 1
                    if count % 256 == 0:
                        check(f"counting frames ({count} so far)")
                    if count >= current().max_decoded_frames:
                        capped = True
                        break
        except av.error.FFmpegError:
            pass  # a damaged tail: sample what came before it
    if count == 0:
        return [], [], 0, capped
    targets = sample_indices(count, num_frames).tolist()
    wanted, last = set(targets), targets[-1]
    frames, stamps = [], []
    with av.open(str(p), metadata_errors="ignore") as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for i, fr in enumerate(_frames(c, s)):
            if i % 64 == 0:
                check(f"decoding frame {i + 1} of {count}")
            if i in wanted:
                frames.append(_frame_rgb(fr, max_side))
                stamps.append(float(fr.time or 0.0))
            if i >= last:
                break
    return frames, stamps, count, capped


def _frames(c, s):
    import av

    try:
        for packet in c.demux(s):
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                continue  # a damaged packet: skip it, keep what decodes
    except av.error.FFmpegError:
        return


def _seek_frame(c, s, t: float):
    """First frame at or after time t (seconds), seeking to the keyframe before it."""
    tb = s.time_base
    target = int(t / tb) if tb else int(t * 1e6)
    c.seek(target, stream=s, backward=True, any_frame=False)
    last = None
    for fr in _frames(c, s):
        last = fr
        if fr.pts is None or fr.pts >= target:
            return fr
    return last


def _frame_rgb(fr, max_side: int) -> np.ndarray:
    h, w = fr.height, fr.width
    th, tw = _target_size(h, w, max_side)
    if (th, tw) != (h, w):
        fr = fr.reformat(width=tw, height=th)
    a = fr.to_ndarray(format="rgb24")
    rot = getattr(fr, "rotation", 0) or 0
    if rot:
        # display matrix rotation is counter-clockwise in degrees
        a = np.ascontiguousarray(np.rot90(a, k=int(round(rot / 90)) % 4))
    return a


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(a).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=hw, mode="bilinear", antialias=True, align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def describe(clip: Clip) -> str:
    """One line for progress messages and captions."""
    t, h, w, _ = clip.frames.shape
    sh, sw = clip.source_size
    size = f"{w}×{h}" + (f" (from {sw}×{sh})" if (sh, sw) != (h, w) else "")
    return f"{t} frames, {size}, {clip.duration:.1f} s at {clip.fps:.3g} fps via {clip.backend}"


#: (container, video codec) pairs a current browser plays in a <video> element (Chromium, Firefox, Safari): MP4/MOV
#: with H.264 or AV1 (also VP9 in MP4), WebM with VP8, VP9 or AV1, Ogg with Theora. PyAV names MP4 and MOV alike
#: ("mov,mp4,m4a,3gp,3g2,mj2") and WebM as Matroska ("matroska,webm").
_PLAYABLE = {("mp4", "h264"), ("mp4", "av1"), ("mp4", "vp9"), ("webm", "vp8"), ("webm", "vp9"), ("webm", "av1"),
             ("ogg", "theora")}


def browser_playable(path: str | os.PathLike[str]) -> bool:
    """Whether a browser's <video> element plays this file: its container and video codec are ones browsers decode
    (MJPEG, FFV1, MPEG-4 part 2 or MS-MPEG4 in AVI/MOV/MKV are not). A file PyAV cannot open counts as playable:
    the analysis says what is wrong with it."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                return True
            codec = c.streams.video[0].codec_context.name
            names = set((c.format.name or "").split(","))
    except Exception:
        return True
    suffix = Path(path).suffix.lower()
    container = "mp4" if "mp4" in names and suffix in (".mp4", ".m4v", ".mov") else \
        "webm" if "webm" in names and suffix == ".webm" else "ogg" if "ogg" in names else ""
    return (container, codec) in _PLAYABLE


def write_preview(clip: Clip, path: str | os.PathLike[str], max_side: int = 480) -> str:
    """An H.264 MP4 of the clip's sampled frames, lasting as long as the video (one frame per sampling interval),
    at most `max_side` pixels on its longer side: what a browser shows for a video it cannot play itself."""
    import av

    t, h, w, _ = clip.frames.shape
    th, tw = _target_size(h, w, max_side)
    th, tw = th - th % 2, tw - tw % 2  # yuv420p wants even sides
    # each frame shown at its own time in the video, in milliseconds (strictly increasing for the muxer)
    pts = np.maximum.accumulate(np.round(np.asarray(clip.timestamps, float) * 1000).astype(np.int64))
    pts = pts + np.arange(t)  # ties (a still stream) one millisecond apart
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=Fraction(max(t, 1) / max(clip.duration, 1e-3)).limit_denominator(1000),
                           options={"preset": "veryfast", "crf": "28"})
        s.width, s.height, s.pix_fmt = tw, th, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for frame, ms in zip(clip.frames, pts.tolist(), strict=True):
            img = frame if (h, w) == (th, tw) else _resize(frame, (th, tw))
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts, vf.time_base = ms, Fraction(1, 1000)
            out.mux(s.encode(vf))
        out.mux(s.encode())
    return str(path)


def example_video(name: str = "bigbuckbunny") -> Path:
    """The absolute path of a bundled clip ("bigbuckbunny", 5.3 s, or "bigbuckbunny-short", 2.4 s; CC-BY 3.0), found
    from the package wherever the caller runs. The clips live in the repository's assets/ folder: a checkout or an
    editable install has them; VideoError says so where they are missing."""
    clip = Path(__file__).resolve().parents[1] / "assets" / f"{name}.mp4"
    if not clip.is_file():
        raise VideoError(f"the example clip {clip.name} is not here ({clip}): the clips ship with the repository "
                         "(assets/), not with a wheel; give the path of any video instead")
    return clip
