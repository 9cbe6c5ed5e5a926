"""The offline smoke task's data: short clips with known answers, made here, nothing downloaded.

Two kinds of question, half the clips each, four options (A-D):
- "colour": one shape moves across the frame while one or two others of other colours stay still; which colour
  is the moving shape?
- "count": one to four shapes (some moving); how many shapes appear?

Every clip is drawn from `numpy.random.default_rng(index)`, so the same index gives the same clip and the same
answer on every machine. The clips are written once, on first use, to `data_dir()` (each file under a temporary
name, then renamed: processes that start together, as `accelerate launch` starts them, may all write; each
reads only complete files).
"""

from __future__ import annotations

import json
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import current

__all__ = ["CLIPS", "FRAMES", "SIZE", "COLOURS", "data_dir", "docs", "make_clip", "parse_letter"]

CLIPS = 32
FRAMES = 16
SIZE = 128
FPS = 8
VERSION = "v1"  # bump when the drawing changes: old files are left where they are, new ones go beside them
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 80, 230), "yellow": (235, 215, 40)}
LETTERS = "ABCD"
POST_PROMPT = "Answer with the option's letter from the given choices directly."


def data_dir() -> Path:
    """Where the clips live: $ENTROPY_SELECT_EVAL_DATA, else ~/.cache/entropy-select/synthetic-v1."""
    base = current().eval_data
    if base:
        return Path(base).expanduser() / f"synthetic-{VERSION}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "entropy-select" / f"synthetic-{VERSION}"


def _square(frame: np.ndarray, y: int, x: int, side: int, colour: tuple[int, int, int]) -> None:
    frame[max(0, y) : y + side, max(0, x) : x + side] = colour


def make_clip(index: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(frames uint8 (FRAMES, SIZE, SIZE, 3), doc without the video path) of clip `index`."""
    rng = np.random.default_rng(index)
    kind = "colour" if index % 2 == 0 else "count"
    names = list(COLOURS)
    side = SIZE // 6
    frames = np.full((FRAMES, SIZE, SIZE, 3), 128, np.uint8)
    frames += rng.integers(0, 6, frames.shape, dtype=np.uint8)  # a little texture, so the codec has work
    if kind == "colour":
        order = rng.permutation(len(names))
        mover = names[order[0]]
        still = [names[i] for i in order[1 : 1 + int(rng.integers(1, 3))]]
        band = SIZE // 3  # three horizontal bands: the mover in one, each still shape in another (no overlap)
        bands = rng.permutation(3)
        y = int(bands[0]) * band + int(rng.integers(0, band - side))
        spots = [(int(b) * band + int(rng.integers(0, band - side)), int(rng.integers(0, SIZE - side)))
                 for b in bands[1 : 1 + len(still)]]
        for t in range(FRAMES):
            for (sy, sx), name in zip(spots, still, strict=True):
                _square(frames[t], sy, sx, side, COLOURS[name])
            x = int(round(t * (SIZE - side) / (FRAMES - 1)))
            _square(frames[t], y, x, side, COLOURS[mover])
        options = names
        answer = LETTERS[options.index(mover)]
        question = "Which colour is the moving shape?"
    else:
        n = int(rng.integers(1, 5))
        cells = rng.permutation(9)[:n]  # one shape per cell of a 3×3 grid: shapes never overlap
        colours = [names[int(i)] for i in rng.integers(0, len(names), n)]
        moving = rng.random(n) < 0.5
        cell = SIZE // 3
        for t in range(FRAMES):
            for c, name, moves in zip(cells, colours, moving, strict=True):
                y0, x0 = (int(c) // 3) * cell, (int(c) % 3) * cell
                dx = int(round((cell - side - 2) * t / (FRAMES - 1))) if moves else (cell - side) // 2
                _square(frames[t], y0 + (cell - side) // 2, x0 + 1 + dx if moves else x0 + dx, side, COLOURS[name])
        options = ["1", "2", "3", "4"]
        answer = LETTERS[n - 1]
        question = "How many shapes appear in the video?"
    doc = {"id": f"synthetic-{index:03d}", "kind": kind, "question": question, "options": options,
           "answer": answer}
    return frames, doc


def _write_video(path: Path, frames: np.ndarray) -> None:
    import av

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(tmp, "w", format="mp4") as c:
            s = c.add_stream("libx264", rate=Fraction(FPS))
            s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            s.options = {"crf": "18", "threads": "1"}
            for f in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def docs(limit: int | None = None) -> list[dict[str, Any]]:
    """The task's documents (id, kind, question, options, answer, video path), the clips written where missing."""
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(CLIPS if limit is None else min(limit, CLIPS)):
        frames, doc = make_clip(i)
        video = folder / f"{doc['id']}.mp4"
        if not video.exists():
            _write_video(video, frames)
        out.append({**doc, "video": str(video)})
    index = folder / "docs.json"
    if not index.exists():  # for people who look: what the task asks, per clip
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".docs-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, index)
    return out


def prompt(doc: dict[str, Any]) -> str:
    """The question, its lettered options, and the instruction to answer with a letter."""
    lines = [doc["question"], *(f"{LETTERS[i]}. {o}" for i, o in enumerate(doc["options"])), POST_PROMPT]
    return "\n".join(lines)


def parse_letter(text: str) -> str | None:
    """The option letter an answer gives: its first capital A-D standing alone ("B", "B.", "(B) red",
    "Answer: B"), or the whole answer when it is one letter in lower case ("c").

    >>> parse_letter("B. red"), parse_letter("(c)"), parse_letter("Answer: D"), parse_letter("a red one")
    ('B', 'C', 'D', None)
    """
    import re

    text = (text or "").strip()
    bare = text.strip("().: ")
    if len(bare) == 1 and bare.upper() in LETTERS:
        return bare.upper()
    m = re.search(r"(?<![A-Za-z])([A-D])(?![A-Za-z])", text)
    return m.group(1) if m else None
