"""The app service (selector/app/service.py): memoized maps, latency rows."""

from __future__ import annotations

import torch
from conftest import SAMPLE
from strategies import tensor

from selector import SelectorConfig, select_tokens
from selector.method import maps

ENC = "efficientnet-lite0"


def test_app_service_computes_maps_on_the_fast_path_once_per_map_config(monkeypatch):
    """select_cached (app, API): the maps come from the fast path (never the one-op-per-offset reference), once
    per (video, τ, windows); moving r, α, ρ or g reuses them and selects what a fresh run selects."""
    from selector.app import service
    from selector.backends import cpu as core
    from selector.features import Features

    calls = []
    real = core.entropy_banded_raw

    def counted(x, cfg):
        calls.append(cfg.tau)
        return real(x, cfg)

    def reference(*a, **k):
        raise AssertionError("the app called the reference entropy")

    grads = []
    real_grad = maps.gradient_map

    def counted_grad(x):
        grads.append(x.shape)
        return real_grad(x)

    monkeypatch.setattr(core, "entropy_banded_raw", counted)
    monkeypatch.setattr(maps, "entropy_map", reference)
    monkeypatch.setattr(maps, "gradient_map", counted_grad)
    svc = service.Service()
    x = tensor((4, 9, 11, 24), 3)
    feats = Features(clip=None, tokens=x, encoder="test", digest="d0", encode_ms=0.0)
    runs = []
    for r, cfg in ((0.3, SelectorConfig()), (0.1, SelectorConfig(alpha=0.9, rho=0.2)),
                   (0.6, SelectorConfig(grid=3, grid_fusion=True)), (0.3, SelectorConfig(tau=0.5)),
                   (0.3, SelectorConfig(alpha=0.2))):
        n = len(calls)
        got = svc.select_cached(feats, r, cfg)
        runs.append(calls[n:])
        want = select_tokens(x, r, cfg)
        assert torch.equal(got.indices, want.indices) and torch.equal(got.score, want.score), (r, cfg)
        assert torch.equal(got.gradient, want.gradient) and torch.equal(got.entropy, want.entropy), (r, cfg)
        assert got.timings_ms["entropy_computed_ms"] > 0
    assert runs == [[1.0], [], [], [0.5], []]  # an entropy map computed for each new τ only
    assert len(grads) == 1 + 5  # Ĝ once for the video (a new τ reuses it) + the 5 fresh runs it is checked against
    # the memo keeps the maps, not the features: evicted features are freed
    import gc
    import weakref

    alive = weakref.ref(x)
    svc.select_cached(Features(clip=None, tokens=x, encoder="test", digest="d1", encode_ms=0.0), 0.3,
                          SelectorConfig(grid_fusion=True))
    assert len(grads) == 7  # another video: its own Ĝ
    del x, feats, got, want
    gc.collect()
    assert alive() is None


def test_latency_independent_selection_counts_across_retention():
    x = tensor((4, 10, 10, 8), 4)
    prev = -1
    for r in (0.05, 0.1, 0.35, 0.5, 0.9):
        sel = select_tokens(x, r)
        assert sel.num_tokens > prev
        prev = sel.num_tokens
        assert set(sel.timings_ms) >= {"entropy", "gradient", "budgets", "select", "total"}
    assert select_tokens(x, 0.3, timed=False).timings_ms == {}


def test_service_caps_frames_and_says_so():
    from selector.app import service

    a = service.Service(max_frames=6).analyze(SAMPLE, service.Params(num_frames=500, encoder=ENC))
    assert a.features.clip.frames.shape[0] == 6 and a.params.num_frames == 6
    assert any("capped at 6" in n for n in a.notes) and any("downscaled" in n for n in a.notes)
