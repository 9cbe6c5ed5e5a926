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
