"""Views read the Selection faithfully: pixels, colour ranges, chart data, notes; viz never imports gradio."""

from __future__ import annotations

import subprocess
import sys

import media
import numpy as np
import pytest
import torch

from selector import SelectorConfig, select_tokens
from viz import flatness_notes, latency_chart, render_frame, render_views, thumbnails
from viz.images import heatmap_mosaic, overlay_mosaic


@pytest.fixture(scope="module")
def clip():
    frames = media.pattern(6, 90, 160)
    x = torch.randn(6, 9, 16, 12, generator=torch.Generator().manual_seed(0))
    return frames, x


def test_render_views_shapes_and_chart_data(clip):
    frames, x = clip
    sel = select_tokens(x, 0.3, SelectorConfig(grid=2))
    v = render_views(thumbnails(frames), sel)
    for img in (v.entropy, v.gradient, v.score, v.overlay):
        assert img.width >= 4 * 256 and img.height > 2 * 144
    bars = v.budgets.data[0]
    assert list(bars.y) == sel.budgets.tolist()
    assert np.allclose(np.asarray(bars.customdata)[:, 0].astype(float), sel.frame_saliency.numpy(), atol=1e-6)
    assert np.allclose(v.budgets.data[1].y, sel.entropy.numpy().mean(axis=(1, 2)), atol=1e-6)


def test_overlay_pixels_follow_keep_mask():
    thumbs = np.full((1, 200, 200, 3), 200, np.uint8)
    keep = np.zeros((1, 4, 4), bool)
    keep[0, 1, 2] = True
    anchors = np.zeros_like(keep)
    anchors[0, 3, 0] = True
    img = np.asarray(overlay_mosaic(thumbs, keep, anchors, np.array([1])))
    pad = 4
    kept_centre = img[pad + 75, pad + 125]
    dropped_centre = img[pad + 125, pad + 75]
    anchor_centre = img[pad + 175, pad + 25]
    assert tuple(kept_centre) == (200, 200, 200)
    assert tuple(dropped_centre) == (50, 50, 50)
    assert tuple(anchor_centre) == (255, 80, 200)
    assert tuple(img[pad + 50, pad + 125]) == (60, 220, 90)  # the kept cell's top edge is outlined


def test_flat_map_reads_only_when_stretched():
    thumbs = np.zeros((2, 120, 120, 3), np.uint8)
    m = np.full((2, 3, 3), 0.995, np.float32)
    m[0, 2, 2] = 0.999
    plain = np.asarray(heatmap_mosaic(m, thumbs, "entropy", stretch=False))[4:124, 4:124]
    stretched = np.asarray(heatmap_mosaic(m, thumbs, "entropy", stretch=True))[4:124, 4:124]
    assert plain[50:120, 50:120].reshape(-1, 3).astype(float).std(0).max() < 2  # flat on the absolute scale
    assert np.abs(stretched[100, 100].astype(int) - stretched[60, 60].astype(int)).sum() > 100


def test_flatness_note_at_tau_one_and_not_at_small_tau():
    x = torch.randn(4, 10, 10, 64, generator=torch.Generator().manual_seed(1))
    assert any("nearly flat" in n for n in flatness_notes(select_tokens(x, 0.3, SelectorConfig(tau=1.0))))
    x = torch.randn(4, 10, 10, 4, generator=torch.Generator().manual_seed(1))
    assert not any("nearly flat" in n for n in flatness_notes(select_tokens(x, 0.3, SelectorConfig(tau=0.02))))


def test_frame_detail_and_latency_chart(clip):
    frames, x = clip
    sel = select_tokens(x, 0.3, SelectorConfig(grid_fusion=True, grid=2))
    img = render_frame(frames[2], sel, 2)
    assert img.width > 2 * 512
    fig = latency_chart([{"retention": r, "median_ms": 10 + r, "min_ms": 9, "max_ms": 12, "kept": int(r * 100)}
                         for r in (0.1, 0.5)])
    assert list(fig.data[0].x) == [0.1, 0.5] and "max/min of medians 1.04" in fig.layout.title.text
    assert "<sup>" not in fig.layout.title.text
    fig = latency_chart([{"retention": 0.1, "median_ms": 10, "min_ms": 9, "max_ms": 12, "kept": 10}], "0.9 left out")
    assert fig.layout.title.text.endswith("<br><sup>0.9 left out</sup>")


def test_viz_never_imports_gradio():
    r = subprocess.run([sys.executable, "-c", "import sys, viz; sys.exit('gradio' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_summary_names_the_stages_and_says_when_the_maps_were_reused():
    from viz import summary_markdown

    x = torch.randn(3, 5, 6, 8, generator=torch.Generator().manual_seed(0))
    first = select_tokens(x, 0.3)
    again = select_tokens(x, 0.2, SelectorConfig(alpha=0.8), reuse=first)
    assert {"entropy", "gradient", "budgets", "select", "total"} <= set(first.timings_ms)
    assert "entropy" not in again.timings_ms and {"budgets", "select", "total"} <= set(again.timings_ms)
    fresh_md = summary_markdown({**first.summary(), "timings_ms": {**first.timings_ms, "entropy_computed_ms": 2.5}},
                                [])
    assert "entropy " in fresh_md and "reused" not in fresh_md and "entropy_computed_ms" not in fresh_md
    md = summary_markdown({**again.summary(), "timings_ms": {**again.timings_ms, "entropy_computed_ms": 31.25}}, [])
    assert "maps reused, entropy computed earlier in 31.2 ms)" in md and "entropy_computed_ms" not in md
    assert f"Kept {again.num_tokens:,} of 90 tokens" in md


def test_heatmap_and_overlay_tiles_equal_a_per_pixel_loop():
    """The vectorized drawing (colours per token spread over pixels, masks at token level) gives exactly the
    pixels of the formula evaluated pixel by pixel: (lut[⌊clip(v)·255⌋]·a + thumb·(256-a)) >> 8 for heatmaps;
    thumb or ⌊thumb/4⌋, green cell edges and magenta anchors for the overlay."""
    from matplotlib import colormaps

    from viz.images import _blend_maps, _overlay_tiles

    rng = np.random.default_rng(3)
    t, h, w, th, tw = 2, 5, 7, 23, 31  # token cells of unequal pixel sizes
    thumbs = rng.integers(0, 256, (t, th, tw, 3), dtype=np.uint8)
    m = rng.uniform(-0.2, 1.2, (t, h, w)).astype(np.float32)  # out-of-range values are clipped
    lut = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.int64)
    a = int(round(0.65 * 256))
    got = _blend_maps(m, thumbs, "magma", 0.65)
    keep = rng.random((t, h, w)) < 0.4
    anchors = np.zeros_like(keep)
    anchors[1, 2, 3] = True
    tiles = _overlay_tiles(thumbs, keep, anchors)
    for f in range(t):
        for y in range(th):
            for x in range(tw):
                r, c = y * h // th, x * w // tw
                colour = lut[int(min(max(float(m[f, r, c]), 0.0), 1.0) * 255)]
                want = (colour * a + thumbs[f, y, x].astype(np.int64) * (256 - a)) >> 8
                assert tuple(got[f, y, x]) == tuple(want), (f, y, x)
                edge = y == 0 or (y - 1) * h // th != r or x == 0 or (x - 1) * w // tw != c
                if anchors[f, r, c]:
                    px = (255, 80, 200)
                elif keep[f, r, c]:
                    px = (60, 220, 90) if edge else tuple(thumbs[f, y, x])
                else:
                    px = tuple(thumbs[f, y, x] // 4)
                assert tuple(tiles[f, y, x]) == px, (f, y, x)


def test_mosaic_labels_are_the_pixels_of_drawing_them_in_place():
    """Tile labels are drawn once and pasted (cached): the same pixels as box + text drawn on the mosaic."""
    from PIL import Image, ImageDraw

    from viz.images import _font, _mosaic

    tiles = np.random.default_rng(0).integers(0, 256, (5, 40, 30, 3), dtype=np.uint8)  # labels wider than tiles
    labels = ["F0  B=12", "", "F2  B=7", "F3", "a longer label that runs off the canvas"]
    got = np.asarray(_mosaic(tiles, labels))
    canvas = np.full(got.shape, 255, np.uint8)
    pad, cols = 4, 4
    for i in range(5):
        x, y = pad + (i % cols) * (30 + pad), pad + (i // cols) * (40 + pad)
        canvas[y : y + 40, x : x + 30] = tiles[i]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for i, lab in enumerate(labels):
        if lab:
            x, y = pad + (i % cols) * (30 + pad), pad + (i // cols) * (40 + pad)
            tb = draw.textbbox((x + 4, y + 3), lab, font=_font())
            draw.rectangle((tb[0] - 3, tb[1] - 2, tb[2] + 3, tb[3] + 2), fill=(0, 0, 0))
            draw.text((x + 4, y + 3), lab, fill=(255, 255, 255), font=_font())
    assert np.array_equal(got, np.asarray(img))


def test_budget_chart_is_the_validated_plotly_figure(clip):
    """The budget chart skips plotly's validation for speed; built with validation (which raises on any
    unknown property) it is the same figure."""
    import json

    import plotly.graph_objects as go

    from viz.charts import budget_chart, budget_spec

    frames, x = clip
    sel = select_tokens(x, 0.3, SelectorConfig(grid=2, max_tokens=45))
    args = (sel.budgets.numpy(), sel.frame_saliency.numpy(), sel.frame_weights.numpy(),
            sel.entropy.numpy().mean(axis=(1, 2)), sel.score.numpy().mean(axis=(1, 2)), 4, 45, np.arange(6) * 0.5)
    fast, checked = budget_chart(*args), go.Figure(budget_spec(*args))
    assert json.loads(fast.to_json()) == json.loads(checked.to_json())
    assert "at B_max" in np.asarray(checked.data[0].customdata)[:, 2].tolist()


def test_empty_chart_says_what_comes_and_has_no_data():
    from viz import empty_chart

    fig = empty_chart("Frame budgets: pick an example", height=300)
    assert len(fig.data) == 0 and fig.layout.height == 300
    assert [a.text for a in fig.layout.annotations] == ["Frame budgets: pick an example"]
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
