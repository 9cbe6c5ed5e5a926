"""read_clip / read_frames on real clips, made-up media of every awkward shape, and broken files."""

from __future__ import annotations

import os

import media
import numpy as np
import pytest
from conftest import SAMPLE, require_tool

from selector import video
from selector.video import VideoError, read_clip, read_frames


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    p = media.pattern
    files = {
        "landscape": media.write(d / "landscape.mp4", p(30, 120, 160)),
        "portrait": media.write(d / "portrait.mp4", p(20, 160, 96)),
        "one_frame": media.write(d / "one.mp4", p(1, 64, 64)),
        "tiny": media.write(d / "tiny.mp4", p(12, 32, 32)),
        "uhd": media.write(d / "uhd.mp4", p(2, 2160, 3840), codec="mpeg4"),
        "long_low_fps": media.write(d / "long.mp4", p(1800, 32, 48), fps=0.25, codec="mpeg4"),  # 2 hours
        "vfr": media.write(d / "vfr.mkv", p(20, 64, 64), pts=[int(1000 * (i**1.5) / 10) for i in range(20)]),
        "gray": media.write(d / "gray.mkv", p(10, 48, 64), codec="ffv1", pix_fmt="gray", fmt_in="gray"),
        "webm": media.write(d / "clip.webm", p(15, 64, 96), codec="libvpx-vp9"),
        "with_audio": media.write(d / "audio.mp4", p(20, 64, 64), audio=True),
    }
    return d, files


@pytest.mark.parametrize("name,t,hw", [
    ("landscape", 16, (120, 160)), ("portrait", 16, (160, 96)), ("one_frame", 1, (64, 64)), ("tiny", 12, (32, 32)),
    ("uhd", 2, (576, 1024)), ("long_low_fps", 16, (32, 48)), ("vfr", 16, (64, 64)), ("gray", 10, (48, 64)),
    ("webm", 15, (64, 96)), ("with_audio", 16, (64, 64)),
])
def test_made_media(made, name, t, hw):
    clip = read_clip(made[1][name], 16)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (t, *hw, 3)
    assert np.all(np.diff(clip.timestamps) > 0), clip.timestamps
    assert clip.frames.std() > 1  # real picture, not black frames
    if name == "uhd":
        assert clip.downscaled and clip.source_size == (2160, 3840)
    if name == "gray":
        assert np.array_equal(clip.frames[..., 0], clip.frames[..., 1])


def test_uniform_over_the_whole_duration(made):
    clip = read_clip(made[1]["long_low_fps"], 16)
    assert clip.duration == pytest.approx(7200, rel=0.01)
    assert clip.timestamps[0] < 7200 / 16 and clip.timestamps[-1] > 7200 * 15 / 16 - 10
    # the moving square shows the frames are distinct, not 16 copies
    assert len({f.tobytes() for f in clip.frames}) == 16


def test_sample_clip_and_read_frames():
    frames = read_frames(SAMPLE, 8)
    assert frames.shape == (8, 576, 1024, 3)
    clip = read_clip(SAMPLE, 300)
    assert clip.frames.shape[0] == 132  # T = min(num_frames, frames available)


@pytest.mark.parametrize("name", ["landscape", "webm", "gray", "long_low_fps", "vfr"])
def test_pyav_fallback_agrees_with_decord(made, name, monkeypatch):
    a = read_clip(made[1][name], 8)
    def refuse(*args):
        raise video._Fallback("refused")
    monkeypatch.setattr(video, "_read_decord", refuse)
    b = read_clip(made[1][name], 8)
    assert b.backend == "pyav" and "decord: refused" in b.notes[0]
    assert a.frames.shape == b.frames.shape
    # same instants within a frame or two (decord samples by index, PyAV by time)
    assert np.abs(a.timestamps - b.timestamps).max() <= 2.1 / a.fps + 1e-6


def test_rotation_metadata_is_honoured(made, tmp_path, monkeypatch):
    require_tool("ffmpeg")
    src = made[1]["landscape"]
    rot = media.rotated(tmp_path / "rot.mp4", src, 90)
    a = read_clip(rot, 4)
    assert a.frames.shape[1:3] == (160, 120)  # displayed as portrait
    upright = read_clip(src, 4).frames
    # the content is the upright frame turned by a quarter: compare with both directions
    err = min(np.abs(np.rot90(upright, k, axes=(1, 2)).astype(int) - a.frames).mean() for k in (1, 3))
    assert err < 8
    def refuse(*args):
        raise video._Fallback("refused")
    monkeypatch.setattr(video, "_read_decord", refuse)
    b = read_clip(rot, 4)
    assert b.frames.shape == a.frames.shape and np.abs(b.frames.astype(int) - a.frames).mean() < 8


def _bad_files(d):
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    (d / "random.mp4").write_bytes(np.random.RandomState(0).bytes(20000))
    from PIL import Image
    Image.fromarray(media.pattern(1, 64, 64)[0]).save(d / "image.png")
    os.replace(d / "image.png", d / "image.mp4")
    good = media.write(d / "good.mp4", media.pattern(40, 96, 128))
    data = good.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (d / "head_only.mp4").write_bytes(data[:200])
    media.audio_only(d / "audio.wav")
    (d / "folder.mp4").mkdir()
    return d


@pytest.mark.parametrize("name,msg", [
    ("missing.mp4", "no such file"),
    ("folder.mp4", "directory"),
    ("empty.mp4", "empty"),
    ("text.mp4", "not a video|could not be opened"),
    ("random.mp4", "not a video|could not be opened|no video stream|no frame"),
    ("image.mp4", "not a video|no frame|could not be opened|single image"),
    ("truncated.mp4", "damaged|truncated|not a video|no frame|could not be opened"),
    ("head_only.mp4", "damaged|truncated|not a video|no frame|could not be opened"),
    ("audio.wav", "no video stream \\(audio only\\)"),
])
@pytest.mark.timeout(60)  # never hangs (pytest-timeout's own limit, not an alarm that would cancel it)
def test_bad_files_raise_clear_errors(tmp_path, name, msg):
    d = _bad_files(tmp_path)
    with pytest.raises(VideoError, match=msg) as e:
        read_clip(d / name, 16)
    text = str(e.value)
    assert "Traceback" not in text and ".cc:" not in text and ".cpp" not in text  # no C++ locations


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_num_frames(n):
    with pytest.raises(VideoError, match="num_frames"):
        read_clip(SAMPLE, n)


@pytest.mark.timeout(300)  # 24 files, none may hang
def test_fuzzed_files_raise_video_error_or_decode(tmp_path):
    """Flipped bytes and truncation at many offsets: a VideoError or frames, never another error or a hang."""
    good = media.write(tmp_path / "good.mp4", media.pattern(24, 64, 96), codec="mpeg4")
    data = good.read_bytes()
    rng = np.random.RandomState(0)
    variants = [data[:n] for n in np.linspace(16, len(data) - 1, 12).astype(int)]
    for _ in range(12):
        b = bytearray(data)
        for i in rng.randint(0, len(b), size=rng.randint(1, 40)):
            b[i] ^= 1 << rng.randint(0, 8)
        variants.append(bytes(b))
    outcomes = {"frames": 0, "error": 0}
    for i, v in enumerate(variants):
        p = tmp_path / f"v{i}.mp4"
        p.write_bytes(v)
        try:
            clip = read_clip(p, 8)
            assert clip.frames.dtype == np.uint8 and clip.frames.ndim == 4 and clip.frames.shape[0] >= 1
            outcomes["frames"] += 1
        except VideoError as e:
            assert ".cc:" not in str(e) and ".cpp" not in str(e)
            outcomes["error"] += 1
    assert sum(outcomes.values()) == 24 and outcomes["error"] >= 1 and outcomes["frames"] >= 1
