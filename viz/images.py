"""Heatmaps and kept-token overlays as PIL images (numpy + matplotlib colormaps; never gradio).

Drawing only reads what the selector returned: maps are (T, h, w) arrays in [0, 1], frames uint8.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

__all__ = ["thumbnails", "heatmap_mosaic", "overlay_mosaic", "frame_detail", "MapRange", "map_range"]

THUMB_W = 256
COLS = 4


@functools.lru_cache(maxsize=8)
def _font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:  # no DejaVu on this machine: Pillow's built-in font still draws every label
        return ImageFont.load_default(size)


def thumbnails(frames: np.ndarray, width: int = THUMB_W) -> np.ndarray:
    """Frames resized to `width` (aspect kept), uint8 (T, h, width, 3); done once per video."""
    t, h, w, _ = frames.shape
    th = max(1, round(h * width / w))
    return np.stack([np.asarray(Image.fromarray(f).resize((width, th), Image.Resampling.BILINEAR)) for f in frames])


@dataclass(frozen=True)
class MapRange:
    lo: float
    hi: float
    p5: float
    p95: float

    @property
    def span(self) -> float:
        return self.hi - self.lo

    def is_flat(self, tol: float = 0.05) -> bool:
        """Flat when 90 % of the values sit within `tol` (a few border tokens do not count)."""
        return self.p95 - self.p5 < tol


def map_range(m: np.ndarray) -> MapRange:
    p5, p95 = np.percentile(m, [5, 95])
    return MapRange(float(m.min()), float(m.max()), float(p5), float(p95))


def _upsample(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour: each token covers an equal rectangle of the frame (squash-resize policy)."""
    ri = (np.arange(h) * m.shape[0] // h).clip(0, m.shape[0] - 1)
    ci = (np.arange(w) * m.shape[1] // w).clip(0, m.shape[1] - 1)
    return m[ri][:, ci]


def _mosaic(tiles: list[np.ndarray] | np.ndarray, labels: list[str], cols: int = COLS) -> Image.Image:
    th, tw = tiles[0].shape[:2]
    n = len(tiles)
    cols = min(cols, n)
    rows = -(-n // cols)
    pad = 4
    canvas = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        x, y = pad + (i % cols) * (tw + pad), pad + (i // cols) * (th + pad)
        canvas[y : y + th, x : x + tw] = tiles[i]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for i, lab in enumerate(labels):
        if lab:
            x, y = pad + (i % cols) * (tw + pad), pad + (i // cols) * (th + pad)
            tb = draw.textbbox((x + 4, y + 3), lab, font=_font())
            draw.rectangle((tb[0] - 3, tb[1] - 2, tb[2] + 3, tb[3] + 2), fill=(0, 0, 0))
            draw.text((x + 4, y + 3), lab, fill=(255, 255, 255), font=_font())
    return img


def _lut(cmap: str) -> np.ndarray:
    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint16)


def _blend_maps(scaled: np.ndarray, thumbs: np.ndarray, cmap: str, blend: float) -> np.ndarray:
    """(T, h, w) values in [0, 1] → colour-mapped and blended over (T, H, W, 3) thumbnails, uint8."""
    th, tw = thumbs.shape[1:3]
    ri = np.minimum(np.arange(th) * scaled.shape[1] // th, scaled.shape[1] - 1)
    ci = np.minimum(np.arange(tw) * scaled.shape[2] // tw, scaled.shape[2] - 1)
    idx = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)[:, ri][:, :, ci]
    a = int(round(blend * 256))
    return ((_lut(cmap)[idx] * a + thumbs.astype(np.uint16) * (256 - a)) >> 8).astype(np.uint8)


def _colorbar(width: int, rng: MapRange, vmin: float, vmax: float, cmap: str, title: str) -> Image.Image:
    h = 46
    img = Image.new("RGB", (width, h), (255, 255, 255))
    bar = _lut(cmap)[np.linspace(0, 255, width - 40).astype(np.uint8)].astype(np.uint8)
    img.paste(Image.fromarray(np.repeat(bar[None], 12, axis=0)), (20, 18))
    d = ImageDraw.Draw(img)
    d.text((20, 2), f"{title}: colour scale {vmin:.4g} to {vmax:.4g}; values in this clip {rng.lo:.4g} to {rng.hi:.4g}",
           fill=(0, 0, 0), font=_font(12))
    d.text((20, 31), f"{vmin:.3g}", fill=(0, 0, 0), font=_font(11))
    right = f"{vmax:.3g}"
    d.text((width - 20 - d.textlength(right, font=_font(11)), 31), right, fill=(0, 0, 0), font=_font(11))
    return img


def _stack(a: Image.Image, b: Image.Image) -> Image.Image:
    out = Image.new("RGB", (a.width, a.height + b.height), (255, 255, 255))
    out.paste(a, (0, 0))
    out.paste(b, (0, a.height))
    return out


def _scale(m: np.ndarray, stretch: bool) -> tuple[np.ndarray, float, float]:
    """Absolute [0, 1] scale, or the clip's own min-max when `stretch` (so flat maps can be read)."""
    if stretch:
        lo, hi = float(m.min()), float(m.max())
        if hi - lo < 1e-12:
            return np.zeros_like(m), lo, hi
        return (m - lo) / (hi - lo), lo, hi
    return np.clip(m, 0, 1), 0.0, 1.0


def heatmap_mosaic(maps: np.ndarray, thumbs: np.ndarray, title: str, cmap: str = "inferno", stretch: bool = False,
                   blend: float = 0.65, labels: list[str] | None = None) -> Image.Image:
    """Every frame's map blended over the frame, in a grid, with a colour bar stating the true range."""
    scaled, vmin, vmax = _scale(maps.astype(np.float32), stretch)
    tiles = _blend_maps(scaled, thumbs, cmap, blend)
    labels = labels or [f"F{f}" for f in range(maps.shape[0])]
    grid = _mosaic(tiles, labels)
    return _stack(grid, _colorbar(grid.width, map_range(maps), vmin, vmax, cmap, title))


def _overlay_tile(thumb: np.ndarray, keep: np.ndarray, anchors: np.ndarray, dim: float = 0.25) -> np.ndarray:
    th, tw = thumb.shape[:2]
    gh, gw = keep.shape
    mask = _upsample(keep, th, tw)
    out = np.where(mask[..., None], thumb, (thumb * dim).astype(np.uint8)).copy()
    # outline kept cells: a pixel on a cell edge whose cell is kept
    ri = (np.arange(th) * gh // th)
    ci = (np.arange(tw) * gw // tw)
    edge_r = np.r_[True, ri[1:] != ri[:-1]]
    edge_c = np.r_[True, ci[1:] != ci[:-1]]
    edge = (edge_r[:, None] | edge_c[None, :]) & mask
    out[edge] = (60, 220, 90)
    if anchors.any():
        for r, c in zip(*np.nonzero(anchors), strict=True):
            y0, y1 = r * th // gh, (r + 1) * th // gh
            x0, x1 = c * tw // gw, (c + 1) * tw // gw
            out[y0:y1, x0:x1] = (255, 80, 200)  # fused anchor: solid magenta cell
    return out


def overlay_mosaic(thumbs: np.ndarray, keep: np.ndarray, anchors: np.ndarray, budgets: np.ndarray) -> Image.Image:
    """Kept tokens bright and outlined in green, dropped ones dimmed, fused anchors solid magenta."""
    tiles = [_overlay_tile(thumbs[f], keep[f], anchors[f]) for f in range(keep.shape[0])]
    labels = [f"F{f}  B={int(budgets[f])}" for f in range(keep.shape[0])]
    grid = _mosaic(tiles, labels)
    legend = Image.new("RGB", (grid.width, 24), (255, 255, 255))
    d = ImageDraw.Draw(legend)
    d.rectangle((20, 6, 32, 18), outline=(60, 220, 90), width=2)
    d.text((38, 5), "kept token", fill=(0, 0, 0), font=_font(12))
    d.rectangle((130, 6, 142, 18), fill=(64, 64, 64))
    d.text((148, 5), "dropped (dimmed)", fill=(0, 0, 0), font=_font(12))
    d.rectangle((280, 6, 292, 18), fill=(255, 80, 200))
    d.text((298, 5), "fused-token anchor", fill=(0, 0, 0), font=_font(12))
    return _stack(grid, legend)


def frame_detail(frame: np.ndarray, entropy: np.ndarray, gradient: np.ndarray, score: np.ndarray,
                 keep: np.ndarray, anchors: np.ndarray, stretch: bool, width: int = 512) -> Image.Image:
    """One frame, large: entropy, gradient, score and the overlay side by side (2×2)."""
    thumb = thumbnails(frame[None], width)
    tiles, labels = [], []
    for name, m, cmap in (("entropy Ĥ", entropy, "inferno"), ("gradient Ĝ", gradient, "viridis"),
                          ("score S", score, "magma")):
        s, lo, hi = _scale(m[None].astype(np.float32), stretch)
        tiles.append(_blend_maps(s, thumb, cmap, 0.65)[0])
        labels.append(f"{name}  [{float(m.min()):.3g}, {float(m.max()):.3g}]" + (" stretched" if stretch else ""))
    tiles.append(_overlay_tile(thumb[0], keep, anchors))
    labels.append(f"kept {int(keep.sum())} of {keep.size}")
    return _mosaic(tiles, labels, cols=2)
