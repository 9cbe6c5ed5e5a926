"""Views of a Selection: pure functions from (frames, Selection) to images, figures and text. No gradio."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from selector import Selection

from .charts import budget_chart, empty_chart, frame_rows_chart, latency_chart, sweep_chart
from .images import compression_overlay, frame_detail, heatmap_mosaic, map_range, overlay_mosaic, thumbnails

__all__ = ["Views", "render_views", "render_frame", "flatness_notes", "summary_markdown", "thumbnails",
           "latency_chart", "budget_chart", "empty_chart", "sweep_chart", "compression_overlay", "frame_rows_chart"]


@dataclass(frozen=True)
class Views:
    entropy: Image.Image | None  # None when the caller said it already shows this map
    gradient: Image.Image | None
    score: Image.Image | None
    overlay: Image.Image
    budgets: go.Figure
    notes: list[str]
    render_ms: float


def _np(sel: Selection) -> dict[str, np.ndarray]:
    t, h, w = sel.grid_shape
    anchors = np.zeros(t * h * w, bool)
    anchors[sel.anchors.cpu().numpy()] = True
    return {"entropy": sel.entropy.cpu().numpy(), "gradient": sel.gradient.cpu().numpy(),
            "score": sel.score.cpu().numpy(), "keep": sel.keep.cpu().numpy(), "anchors": anchors.reshape(t, h, w),
            "budgets": sel.budgets.cpu().numpy()}


def flatness_notes(sel: Selection, stretch: bool = False) -> list[str]:
    """Plain-language warnings when a map carries little information, with the reason (short when the colours are
    already stretched to the map's own range, which makes such a map readable)."""
    notes = []
    e = map_range(sel.entropy.cpu().numpy())
    if e.is_flat() and stretch:
        notes.append(f"Ĥ spans only {e.p5:.4f}–{e.p95:.4f} (90 % of tokens) at τ = {sel.config.tau:g}: the colours "
                     "are stretched to that range. Lower τ (e.g. 0.05) for more contrast.")
    elif e.is_flat():
        notes.append(
            f"The entropy map is nearly flat (90 % of tokens between {e.p5:.4f} and {e.p95:.4f}) at "
            f"τ = {sel.config.tau:g}: cosine "
            "similarities lie in [-1, 1], so exp(s/τ) barely varies over a neighbourhood and every neighbour "
            "distribution is close to uniform (Ĥ ≈ 1; a perfectly homogeneous neighbourhood gives exactly 1). "
            "Lower τ (e.g. 0.05) to make it informative, or switch on 'stretch colours' to read the small "
            "differences that still rank the tokens."
        )
    g = map_range(sel.gradient.cpu().numpy())
    if g.span == 0:
        notes.append("The gradient map is constant (all tokens equal their neighbours), so Ĝ = 0 everywhere.")
    if sel.num_tokens < sel.grid_shape[0] * sel.config.min_tokens:
        notes.append(f"K = {sel.num_tokens} is below T·B_min = {sel.grid_shape[0] * sel.config.min_tokens}: "
                     "B_min cannot hold, so K is spread as evenly as possible over the frames.")
    return notes


def render_views(frames_thumbs: np.ndarray, sel: Selection, stretch: bool = False,
                 timestamps: np.ndarray | None = None, skip: frozenset[str] = frozenset()) -> Views:
    """All views of a selection; names in `skip` ("entropy", "gradient", "score") are not drawn (None)."""
    t0 = time.perf_counter()
    a = _np(sel)
    cfg = sel.config
    b_max = cfg.max_tokens or sel.grid_shape[1] * sel.grid_shape[2]
    views = Views(
        entropy=None if "entropy" in skip else heatmap_mosaic(a["entropy"], frames_thumbs, "entropy Ĥ", "inferno",
                                                              stretch),
        gradient=None if "gradient" in skip else heatmap_mosaic(a["gradient"], frames_thumbs, "gradient Ĝ",
                                                                "viridis", stretch),
        score=None if "score" in skip else heatmap_mosaic(a["score"], frames_thumbs, "score S = αĤ + (1-α)Ĝ",
                                                          "magma", stretch),
        overlay=overlay_mosaic(frames_thumbs, a["keep"], a["anchors"], a["budgets"]),
        budgets=budget_chart(a["budgets"], sel.frame_saliency.cpu().numpy(), sel.frame_weights.cpu().numpy(),
                             a["entropy"].mean(axis=(1, 2)), a["score"].mean(axis=(1, 2)), cfg.min_tokens, b_max,
                             timestamps),
        notes=flatness_notes(sel, stretch),
        render_ms=0.0,
    )
    return Views(**{**views.__dict__, "render_ms": (time.perf_counter() - t0) * 1e3})


def render_frame(frame: np.ndarray, sel: Selection, index: int, stretch: bool = False) -> Image.Image:
    a = _np(sel)
    i = int(np.clip(index, 0, sel.grid_shape[0] - 1))
    return frame_detail(frame, a["entropy"][i], a["gradient"][i], a["score"][i], a["keep"][i], a["anchors"][i],
                        stretch)


def summary_markdown(summary: dict[str, Any], notes: list[str]) -> str:
    t, h, w = summary["grid"]
    tm = summary["timings_ms"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in tm.items() if k not in ("total", "entropy_computed_ms"))
    if "entropy_computed_ms" in tm and "entropy" not in tm:  # a slider move that reused the memoized maps
        stages += f"; maps reused, entropy computed earlier in {tm['entropy_computed_ms']:.1f} ms"
    lines = [
        f"**Kept {summary['tokens_kept']:,} of {summary['tokens_total']:,} tokens** "
        f"({100 * summary['tokens_kept'] / summary['tokens_total']:.1f} %) — grid {t} frames × {h} × {w}"
        + (f", {summary['fused_tokens']} fused" if summary.get("fused_tokens") else ""),
        f"Selector: **{tm.get('total', 0):.1f} ms** on {summary.get('device', 'cpu')} ({stages}) · "
        f"views {summary.get('render_ms', 0):.0f} ms · encoder `{summary.get('encoder', '?')}` in "
        f"{summary.get('encoder_precision', 'fp32')} ({summary.get('encode_ms', 0):.0f} ms for the clip, cached "
        "afterwards)",
    ]
    if summary.get("video"):
        lines.append(f"Video: {summary['video']}")
    lines += [f"> ⚠️ {n}" for n in notes]
    return "\n\n".join(lines)
