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


def _token_index(pixels: int, tokens: int) -> np.ndarray:
    """The token row (or column) of each pixel row (column) when `tokens` cover `pixels` in equal runs
    (nearest neighbour; the squash-resize policy of every view)."""
    return np.arange(pixels) * tokens // pixels


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
    for i, lab in enumerate(labels):
        if lab:
            x, y = pad + (i % cols) * (tw + pad), pad + (i // cols) * (th + pad)
            patch, dx, dy = _label(lab)
            _paste(canvas, patch, x + dx, y + dy)
    return Image.fromarray(canvas)


@functools.lru_cache(maxsize=512)
def _label(text: str, size: int = 13) -> tuple[np.ndarray, int, int]:
    """A tile label drawn once: white text on its black box, and the box's offset from the tile corner (the
    same pixels as drawing box and text on the mosaic itself; the frame labels repeat on every slider move)."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    tb = probe.textbbox((4, 3), text, font=_font(size))
    x0, y0 = tb[0] - 3, tb[1] - 2
    img = Image.new("RGB", (tb[2] + 3 - x0 + 1, tb[3] + 2 - y0 + 1), (0, 0, 0))
    ImageDraw.Draw(img).text((4 - x0, 3 - y0), text, fill=(255, 255, 255), font=_font(size))
    patch = np.asarray(img)
    patch.setflags(write=False)
    return patch, x0, y0


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """patch into canvas at (x, y), clipped to the canvas."""
    h, w = patch.shape[:2]
    ys, xs = max(0, -y), max(0, -x)
    ye, xe = min(h, canvas.shape[0] - y), min(w, canvas.shape[1] - x)
    if ye > ys and xe > xs:
        canvas[y + ys : y + ye, x + xs : x + xe] = patch[ys:ye, xs:xe]


@functools.lru_cache(maxsize=16)
def _lut(cmap: str, weight: int = 1) -> np.ndarray:
    """The colormap as 256 uint16 RGB rows, times `weight` (read-only, cached)."""
    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint16) * np.uint16(weight)
    lut.setflags(write=False)
    return lut


def _blend_maps(scaled: np.ndarray, thumbs: np.ndarray, cmap: str, blend: float) -> np.ndarray:
    """(T, h, w) values in [0, 1] → colour-mapped and blended over (T, H, W, 3) thumbnails, uint8:
    (colour·a + thumb·(256-a)) >> 8 with a = round(blend·256). The colours are looked up per token and then
    spread over the token's pixels (the same pixels as a lookup per pixel), in place in one uint16 buffer."""
    th, tw = thumbs.shape[1:3]
    ri, ci = _token_index(th, scaled.shape[1]), _token_index(tw, scaled.shape[2])
    a = int(round(blend * 256))
    colour = _lut(cmap, a)[(np.clip(scaled, 0, 1) * 255).astype(np.uint8)]  # (T, h, w, 3), times a
    out = np.take(np.take(colour, ri, axis=1), ci, axis=2)  # (T, th, tw, 3) uint16, a fresh array
    out += np.multiply(thumbs, np.uint16(256 - a), dtype=np.uint16)  # <= 255·256: no overflow
    out >>= 8
    return out.astype(np.uint8)


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


def _overlay_tiles(thumbs: np.ndarray, keep: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(T, th, tw, 3) tiles: kept cells as they are and outlined in green, dropped ones at a quarter of their
    brightness, fused anchors solid magenta; all frames at once."""
    th, tw = thumbs.shape[1:3]
    gh, gw = keep.shape[1:]
    ri, ci = _token_index(th, gh), _token_index(tw, gw)
    # nearest-neighbour: each token covers an equal rectangle (squash-resize policy); the mask is spread to the
    # three channels at token level, so the copy below needs no broadcasting (3× faster)
    mask3 = np.take(np.take(np.repeat(keep[..., None], 3, axis=-1), ri, axis=1), ci, axis=2)
    mask = mask3[..., 0]
    out = thumbs >> 2  # floor(x / 4)
    np.copyto(out, thumbs, where=mask3)
    # outline kept cells: a pixel on a cell edge whose cell is kept
    edge_r = np.r_[True, ri[1:] != ri[:-1]]
    edge_c = np.r_[True, ci[1:] != ci[:-1]]
    out[(edge_r[:, None] | edge_c[None, :]) & mask] = (60, 220, 90)
    if anchors.any():  # fused anchor: solid magenta cell (the same pixel → token mapping as the mask)
        out[anchors[:, ri][:, :, ci]] = (255, 80, 200)
    return out


def overlay_mosaic(thumbs: np.ndarray, keep: np.ndarray, anchors: np.ndarray, budgets: np.ndarray) -> Image.Image:
    """Kept tokens bright and outlined in green, dropped ones dimmed, fused anchors solid magenta."""
    tiles = _overlay_tiles(thumbs, keep.astype(bool), anchors.astype(bool))
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
    tiles.append(_overlay_tiles(thumb, keep[None].astype(bool), anchors[None].astype(bool))[0])
    labels.append(f"kept {int(keep.sum())} of {keep.size}")
    return _mosaic(tiles, labels, cols=2)


def compression_overlay(thumbs: np.ndarray, grid: tuple[int, int, int], positions: np.ndarray, merged: np.ndarray,
                        title: str) -> Image.Image:
    """The kept-token overlay of any compression (rows at flat positions t·H·W + h·W + w; merged rows marked as
    anchors), titled with the method's name."""
    t_, h_, w_ = grid
    keep = np.zeros(t_ * h_ * w_, bool)
    keep[positions] = True
    anchors = np.zeros_like(keep)
    anchors[positions[merged.astype(bool)]] = True
    budgets = np.bincount(positions // (h_ * w_), minlength=t_)
    body = overlay_mosaic(thumbs, keep.reshape(t_, h_, w_), anchors.reshape(t_, h_, w_), budgets)
    head, tw, th = _label(title, 16)
    canvas = np.full((th + 8, body.width, 3), 255, np.uint8)
    _paste(canvas, head, 8, 4)
    return _stack(Image.fromarray(canvas), body)
