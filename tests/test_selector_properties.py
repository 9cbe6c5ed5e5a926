"""Invariants of select_tokens (hypothesis), edge cases, errors, devices."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selector import SelectorConfig, SelectorError, select_tokens
from selector.method import allocate, maps
from selector.method.pipeline import num_kept

odd = st.sampled_from([1, 3, 5, 7])
configs = st.builds(
    SelectorConfig,
    alpha=st.floats(0, 1),
    tau=st.floats(0.01, 5),
    window=odd,
    temporal_window=st.integers(1, 4),
    past_window=odd,
    grid=st.integers(1, 5),
    rho=st.floats(0, 1),
    q=st.floats(0.01, 1),
    tau_alloc=st.floats(0.01, 2),
    min_tokens=st.integers(0, 8),
    grid_fusion=st.booleans(),
)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 9), st.integers(1, 6))


def tensor(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, cfg=configs, r=st.floats(1e-4, 1.0), seed=st.integers(0, 2**16))
def test_counts_ranges_and_consistency(shape, cfg, r, seed):
    x = tensor(shape, seed)
    t, h, w, d = shape
    n = t * h * w
    sel = select_tokens(x, r, cfg)
    k = max(1, math.floor(r * n + 1e-9))
    assert sel.num_tokens == k and sel.tokens.shape == (k, d)
    assert int(sel.budgets.sum()) == k and bool((sel.budgets >= 0).all())
    assert bool((sel.budgets <= h * w).all())
    assert int(sel.keep.sum()) == k
    idx = sel.indices
    assert bool((idx[1:] > idx[:-1]).all()) and int(idx.min()) >= 0 and int(idx.max()) < n
    assert torch.equal(torch.nonzero(sel.keep.reshape(-1)).flatten(), idx)
    assert torch.equal(sel.keep.reshape(t, -1).sum(1), sel.budgets)
    for m in (sel.entropy, sel.gradient, sel.score):
        assert m.dtype == torch.float32 and m.shape == (t, h, w)
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    real = ~sel.fused
    assert torch.equal(sel.tokens[real], x.reshape(n, d)[idx[real]])
    if not cfg.grid_fusion:
        assert not bool(sel.fused.any())


@settings(max_examples=80, deadline=None)
@given(shape=shapes, cfg=configs, seed=st.integers(0, 2**16))
def test_banded_entropy_equals_reference(shape, cfg, seed):
    from selector.backends.cpu import entropy_banded

    xn = maps.normalize(tensor(shape, seed))
    assert float((entropy_banded(xn, cfg) - maps.entropy_map(xn, cfg)).abs().max()) < 1e-5


@settings(max_examples=80, deadline=None)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 16), st.integers(1, 5)), cfg=configs,
       cols=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_strips_give_the_reference_entropy(shape, cfg, cols, seed):
    """On a CPU wide grids are cut into strips of query columns with halo columns and zero rows between
    them; any strip width (1 column upwards, the last strip part empty) gives the reference map."""
    from selector.backends import cpu as fast

    x = tensor(shape, seed)
    ref = maps.entropy_map(maps.normalize(x), cfg)
    old = fast.STRIP_COLS
    try:
        fast.STRIP_COLS = cols
        rmax = max(cfg.window, cfg.past_window) // 2
        s_, b, hc = fast.strip_plan(shape[2], rmax, "cpu", cols)
        assert s_ * b >= shape[2] and (s_ - 1) * b < shape[2] and hc == (rmax if s_ > 1 else 0)
        for got in (fast.entropy_banded_raw(x, cfg), fast.entropy_banded(maps.normalize(x), cfg)):
            assert float((got - ref).abs().max()) < 1e-5
    finally:
        fast.STRIP_COLS = old


def test_cpu_scratch_reuse_across_layouts_and_threads():
    """The CPU entropy keeps its last layout's buffers per thread: calls that switch grid, window or strip
    layout, and calls from two threads at once, each get the reference map."""
    import threading

    from selector.backends import cpu as fast

    cases = [((3, 5, 24, 8), SelectorConfig()), ((2, 4, 24, 8), SelectorConfig(window=3, temporal_window=4)),
             ((3, 5, 24, 8), SelectorConfig(past_window=5, tau=0.2)), ((4, 3, 7, 5), SelectorConfig())]
    data = [(tensor(shape, i), cfg) for i, (shape, cfg) in enumerate(cases)]
    want = [maps.entropy_map(maps.normalize(x), cfg) for x, cfg in data]
    errors: list[float] = []

    def run(order):
        for i in order:
            x, cfg = data[i]
            errors.append(float((fast.entropy_banded_raw(x, cfg) - want[i]).abs().max()))

    old = fast.STRIP_COLS
    try:
        fast.STRIP_COLS = 4  # the 24-column grids go in strips
        run([0, 1, 0, 2, 3, 0])
        threads = [threading.Thread(target=run, args=(order,)) for order in ([0, 1, 2, 3] * 3, [3, 2, 1, 0] * 3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        fast.release_scratch()
        run([2])
    finally:
        fast.STRIP_COLS = old
    assert len(errors) == 6 + 24 + 1 and max(errors) < 1e-5


def test_cpu_strip_width_is_timed_once_per_grid_and_gives_the_reference(monkeypatch):
    """Unpinned, the CPU entropy times every distinct strip layout of STRIP_CANDIDATES at a grid's first call
    (each twice, on the first TUNE_FRAMES frames), keeps one, and uses it from then on without timing again;
    whatever it keeps, the map is the reference's."""
    from selector.backends import cpu as fast

    monkeypatch.setattr(fast, "STRIP_COLS", None)
    monkeypatch.delenv("ENTROPY_SELECT_STRIP_COLS", raising=False)
    monkeypatch.setattr(fast, "_tuned", {})
    monkeypatch.setattr(fast, "STRIP_CANDIDATES", (4, 6, 1 << 30, 12))  # 12 is one strip too: 3 layouts timed
    monkeypatch.setattr(fast, "TUNE_FRAMES", 2)
    calls: list[tuple[int, int]] = []
    real = fast._banded_cols

    def spy(x, cfg, normalized, cols):
        calls.append((x.shape[0], cols))
        return real(x, cfg, normalized, cols)

    monkeypatch.setattr(fast, "_banded_cols", spy)
    cfg = SelectorConfig(window=3, past_window=3)  # rmax 1: 24 columns in strips of 4 or 6, or one strip
    x = tensor((4, 5, 24, 8), 3)
    ref = maps.entropy_map(maps.normalize(x), cfg)
    assert fast.strip_choice(5, 24, 8, cfg) is None
    first = fast.entropy_banded_raw(x, cfg)
    timed = calls[:-1]
    assert sorted(timed) == [(2, 4), (2, 4), (2, 6), (2, 6), (2, 1 << 30), (2, 1 << 30)]
    chosen = fast.strip_choice(5, 24, 8, cfg)
    assert chosen in (4, 6, 1 << 30) and calls[-1] == (4, chosen)
    calls.clear()
    again = fast.entropy_banded_raw(x, cfg)
    assert calls == [(4, chosen)] and torch.equal(again, first)
    assert float((first - ref).abs().max()) < 1e-5
    for cols in (4, 6, 1 << 30):  # every candidate layout gives the same map
        assert float((real(maps.normalize(x), cfg, True, cols) - first).abs().max()) < 1e-6
        assert float((real(x, cfg, False, cols) - first).abs().max()) < 1e-6
    calls.clear()  # a grid too narrow for strips has one layout: nothing to time
    narrow = tensor((2, 3, 7, 8), 4)
    fast.entropy_banded_raw(narrow, cfg)
    assert calls == [(2, 4)] and fast.strip_choice(3, 7, 8, cfg) == 4


def test_cpu_strip_width_pinned_by_the_environment(monkeypatch):
    from selector import SelectorError
    from selector.backends import cpu as fast

    monkeypatch.setattr(fast, "STRIP_COLS", None)
    monkeypatch.setattr(fast, "_tuned", {})
    monkeypatch.setenv("ENTROPY_SELECT_STRIP_COLS", "4")
    cfg = SelectorConfig()
    x = tensor((3, 5, 24, 8), 5)
    assert fast.strip_choice(5, 24, 8, cfg) == 4
    got = fast.entropy_banded_raw(x, cfg)
    assert fast._tuned == {}  # nothing timed
    assert float((got - maps.entropy_map(maps.normalize(x), cfg)).abs().max()) < 1e-5
    for bad in ("0", "nine", "-3"):
        monkeypatch.setenv("ENTROPY_SELECT_STRIP_COLS", bad)
        with pytest.raises(SelectorError, match="ENTROPY_SELECT_STRIP_COLS must be an int >= 1"):
            select_tokens(x, 0.5, cfg)


def test_strip_plan_of_the_benchmark_grids():
    from selector.backends.cpu import strip_plan

    assert strip_plan(27, 2, "cpu") == (3, 9, 2)  # SigLIP grid on a CPU: 3 strips of 9 (+ 2 + 2) columns
    assert strip_plan(14, 2, "cpu") == (1, 14, 0)  # LLaVA grid: too narrow to gain, plain grid rows
    assert strip_plan(27, 2, "cuda") == (1, 27, 0)


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 3])
def test_cpu_chunks_give_the_same_maps(monkeypatch, frames_per_chunk):
    """The CPU paths go through the frames in chunks (past frames carried over or re-normalized when a
    chunk is shorter than the temporal window); any chunk size gives the one-chunk maps."""
    from selector.backends import cpu as fast

    x = tensor((7, 5, 6, 16), 9)
    whole_g = maps.gradient_magnitude(x)
    cfgs = [SelectorConfig(), SelectorConfig(temporal_window=4, window=3, past_window=5, tau=0.1)]
    whole_h = [fast.entropy_banded_raw(x, c) for c in cfgs]
    monkeypatch.setattr(maps, "CHUNK_BYTES", frames_per_chunk * 5 * 6 * 16 * 4)
    assert torch.equal(maps.gradient_magnitude(x), whole_g)
    for cols in (fast.STRIP_COLS, 2):  # one strip, then 3 strips of 2 columns
        monkeypatch.setattr(fast, "STRIP_COLS", cols)
        for c, h in zip(cfgs, whole_h, strict=True):
            chunked = fast.entropy_banded_raw(x, c)
            assert float((chunked - h).abs().max()) < 1e-6
            assert float((chunked - maps.entropy_map(maps.normalize(x), c)).abs().max()) < 1e-5


@settings(max_examples=40, deadline=None)
@given(shape=shapes, cfg=configs, r=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_deterministic(shape, cfg, r, seed):
    x = tensor(shape, seed)
    a, b = select_tokens(x, r, cfg), select_tokens(x.clone(), r, cfg)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.tokens, b.tokens)


@settings(max_examples=40, deadline=None)
@given(t=st.integers(2, 5), kt=st.integers(1, 4), cut=st.integers(1, 4), seed=st.integers(0, 999))
def test_temporal_window_sees_only_past_frames(t, kt, cut, seed):
    cut = min(cut, t - 1)
    cfg = SelectorConfig(temporal_window=kt, tau=0.1)
    x = tensor((t, 5, 5, 4), seed)
    y = x.clone()
    y[cut:] = torch.randn_like(y[cut:])  # change the future of frame cut-1
    ha = maps.entropy_map(maps.normalize(x), cfg)
    hb = maps.entropy_map(maps.normalize(y), cfg)
    assert torch.equal(ha[:cut], hb[:cut])
    # and the past does reach the present when K_t > 1
    if kt > 1:
        z = x.clone()
        z[cut - 1] = torch.randn_like(z[cut - 1])
        hc = maps.entropy_map(maps.normalize(z), cfg)
        assert not torch.equal(ha[cut], hc[cut])


@settings(max_examples=40, deadline=None)
@given(k=odd, kp=odd, r0=st.integers(0, 8), c0=st.integers(0, 8), seed=st.integers(0, 999))
def test_window_locality(k, kp, r0, c0, seed):
    cfg = SelectorConfig(window=k, past_window=kp, temporal_window=2, tau=0.2)
    x = tensor((2, 9, 9, 4), seed)
    y = x.clone()
    y[0, r0, c0] = torch.randn(4)
    diff = (maps.entropy_map(maps.normalize(x), cfg) != maps.entropy_map(maps.normalize(y), cfg))
    rr, cc = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    cheb = torch.maximum((rr - r0).abs(), (cc - c0).abs())
    assert not bool(diff[0][cheb > k // 2].any())  # same frame: within k//2
    assert not bool(diff[1][cheb > kp // 2].any())  # next frame sees it through k_past


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), g=st.integers(1, 5), r=st.floats(0.05, 1), seed=st.integers(0, 999))
def test_every_grid_cell_keeps_a_token_when_budget_allows(h, w, g, r, seed):
    cfg = SelectorConfig(grid=g)
    x = tensor((3, h, w, 4), seed)
    sel = select_tokens(x, r, cfg)
    cells = allocate.cell_ids(h, w, g, torch.device("cpu"))
    n_cells = int(torch.unique(cells).numel())
    for f in range(3):
        if int(sel.budgets[f]) >= n_cells:
            kept_cells = torch.unique(cells[sel.keep[f].reshape(-1)])
            assert kept_cells.numel() == n_cells


@settings(max_examples=60, deadline=None)
@given(shape=shapes, cfg=configs, r=st.floats(0.01, 1), seed=st.integers(0, 999))
def test_budgets_ordered_by_frame_saliency(shape, cfg, r, seed):
    sel = select_tokens(tensor(shape, seed), r, cfg)
    s, b = sel.frame_saliency.tolist(), sel.budgets.tolist()
    for i in range(len(s)):
        for j in range(len(s)):
            if s[i] > s[j]:
                assert b[i] >= b[j]


@pytest.mark.parametrize(
    "shape,r",
    [((1, 27, 27, 8), 0.35), ((4, 1, 1, 3), 0.5), ((1, 1, 1, 1), 0.5), ((3, 2, 2, 4), 0.35), ((2, 5, 5, 1), 1e-6),
     ((2, 5, 5, 3), 1.0), ((5, 3, 4, 2), 0.01)],
)
def test_edge_cases(shape, r):
    x = tensor(shape, 1)
    sel = select_tokens(x, r)
    n = math.prod(shape[:3])
    assert sel.num_tokens == max(1, math.floor(r * n + 1e-9))
    if r == 1.0:
        assert torch.equal(sel.tokens, x.reshape(n, -1)) and bool(sel.keep.all())


def test_kept_rows_are_gathered_on_demand_once_and_into_a_callers_buffer():
    x = tensor((3, 6, 7, 5), 4)
    sel = select_tokens(x, 0.3)
    assert sel.rows is None and sel.source is x  # selecting copied no rows
    want = x.reshape(-1, 5)[sel.indices]
    first = sel.tokens
    assert torch.equal(first, want) and sel.tokens is first  # gathered once, then cached
    buf = torch.full((sel.num_tokens + 2, 5), float("nan"))
    got = sel.gather_into(buf[1:-1])
    assert got.data_ptr() == buf[1].data_ptr() and torch.equal(buf[1:-1], want)
    assert bool(buf[0].isnan().all() and buf[-1].isnan().all())  # nothing written outside the slice
    with pytest.raises(SelectorError, match="float32 buffer"):  # cached rows: the same checks as the features
        sel.gather_into(torch.empty(sel.num_tokens, 5, dtype=torch.float64))
    fresh = select_tokens(x, 0.3)  # straight from the features (no cached rows)
    out = torch.empty(fresh.num_tokens, 5)
    assert torch.equal(fresh.gather_into(out), want) and fresh.rows is None
    strided = torch.empty(5, fresh.num_tokens).t()
    for bad, msg in ((torch.empty(fresh.num_tokens + 1, 5), rf"\({fresh.num_tokens}, 5\) buffer"),
                     (strided, "non-contiguous"), (out.double(), "float32 buffer")):
        with pytest.raises(SelectorError, match=msg):
            fresh.gather_into(bad)
    fusing = select_tokens(x, 0.3, SelectorConfig(grid_fusion=True))  # merged rows: computed with the selection
    assert fusing.rows is not None and bool(fusing.fused.any())
    assert not torch.equal(fusing.tokens[fusing.fused], x.reshape(-1, 5)[fusing.anchors])
    assert torch.equal(fusing.gather_into(torch.empty_like(fusing.tokens)), fusing.tokens)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes, configs, configs, st.floats(0.01, 1.0), st.integers(0, 2**16))
def test_reuse_of_the_maps_gives_a_fresh_runs_selection(shape, first, later, r, seed):
    """A sweep over r, α, ρ, g, fusion and the budget knobs that reuses an earlier Selection's maps selects exactly
    what a run from scratch selects."""
    from dataclasses import asdict

    from selector.method.pipeline import MAP_FIELDS

    x = tensor(shape, seed)
    later = SelectorConfig(**{**asdict(later), **{f: getattr(first, f) for f in MAP_FIELDS}})
    base = select_tokens(x, 0.5, first)
    fresh, again = select_tokens(x, r, later), select_tokens(x, r, later, reuse=base)
    for name in ("keep", "indices", "budgets", "score", "entropy", "gradient", "fused", "frame_saliency"):
        assert torch.equal(getattr(again, name), getattr(fresh, name)), name
    torch.testing.assert_close(again.tokens, fresh.tokens, atol=0, rtol=0)


def test_reuse_refuses_maps_that_do_not_hold():
    x = tensor((3, 6, 7, 8), 0)
    sel = select_tokens(x, 0.3, SelectorConfig(tau=0.5))
    for cfg, msg in ((SelectorConfig(tau=0.6), r"tau 0.5 → 0.6"), (SelectorConfig(tau=0.5, window=3), "window 5 → 3"),
                     (SelectorConfig(tau=0.5, temporal_window=2, past_window=1),
                      "temporal_window 3 → 2, past_window 3 → 1")):
        with pytest.raises(SelectorError, match=msg):
            select_tokens(x, 0.3, cfg, reuse=sel)
    with pytest.raises(SelectorError, match=r"\(3, 6, 7\) grid, the tokens are \(3, 6, 6\)"):
        select_tokens(x[:, :, :6], 0.3, SelectorConfig(tau=0.5), reuse=sel)
    with pytest.raises(SelectorError, match="do not pass entropy_fn"):
        select_tokens(x, 0.3, SelectorConfig(tau=0.5), reuse=sel, entropy_fn=maps.entropy_map)
    with pytest.raises(SelectorError, match="reuse must be a Selection, got Tensor"):
        select_tokens(x, 0.3, reuse=sel.entropy)
    copy = x.clone()  # another tensor with the same values: reused
    assert torch.equal(select_tokens(copy, 0.2, SelectorConfig(tau=0.5), reuse=sel).indices,
                       select_tokens(x, 0.2, SelectorConfig(tau=0.5)).indices)
    for other in (x + 1e-3, x.double(), x.transpose(1, 2).contiguous().transpose(1, 2) * 2):
        with pytest.raises(SelectorError, match="computed from other tokens"):
            select_tokens(other, 0.3, SelectorConfig(tau=0.5), reuse=sel)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(SelectorError, match="NaN"):  # the tokens are still checked
        select_tokens(bad, 0.3, SelectorConfig(tau=0.5), reuse=sel)


def test_app_service_computes_maps_on_the_fast_path_once_per_map_config(monkeypatch):
    """select_cached (app, API): the maps come from the fast path (never the one-op-per-offset reference), once
    per (video, τ, windows); moving r, α, ρ or g reuses them and selects what a fresh run selects."""
    from selector.app import service
    from selector.features import Features
    from selector.method import pipeline as core

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


def test_zero_tokens_and_constant_video_are_handled():
    sel = select_tokens(torch.zeros(2, 4, 4, 3), 0.5)
    assert sel.num_tokens == 16 and float(sel.gradient.max()) == 0.0
    sel = select_tokens(torch.ones(2, 4, 4, 3), 0.5)
    assert float(sel.entropy.min()) == pytest.approx(1.0)


def test_k_below_t_times_min_tokens():
    sel = select_tokens(tensor((8, 3, 3, 4), 0), 0.1, SelectorConfig(min_tokens=4))
    assert sel.num_tokens == 7 and int(sel.budgets.sum()) == 7
    assert sorted(sel.budgets.tolist()) == [0] + [1] * 7
    assert int(sel.budgets[int(sel.frame_weights.argmin())]) == 0  # the least salient frame gives way
    sel = select_tokens(tensor((4, 5, 5, 4), 0), 0.1, SelectorConfig(min_tokens=4))  # K = 10 < 16
    assert sorted(sel.budgets.tolist()) == [2, 2, 3, 3]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_any_float_dtype(dtype):
    x = tensor((2, 6, 6, 8), 2)
    sel = select_tokens(x.to(dtype), 0.3)
    assert sel.tokens.dtype == dtype and sel.score.dtype == torch.float32
    ref = select_tokens(x.to(dtype).float(), 0.3)
    assert torch.equal(sel.indices, ref.indices)


def test_latency_independent_selection_counts_across_retention():
    x = tensor((4, 10, 10, 8), 4)
    prev = -1
    for r in (0.05, 0.1, 0.35, 0.5, 0.9):
        sel = select_tokens(x, r)
        assert sel.num_tokens > prev
        prev = sel.num_tokens
        assert set(sel.timings_ms) >= {"entropy", "gradient", "budgets", "select", "total"}
    assert select_tokens(x, 0.3, timed=False).timings_ms == {}


BAD_TOKENS = [
    (torch.randn(4, 4, 4), "4 dims"),
    (torch.randn(2, 0, 4, 3), "empty dimension"),
    (torch.randint(0, 5, (2, 3, 3, 4)), "float tensor"),
    (torch.tensor([[[[float("nan")]]]]), "NaN/Inf"),
    (torch.full((1, 2, 2, 2), float("inf")), "NaN/Inf"),
    (torch.randn(2, 3, 3, 4).index_put_((torch.tensor([1]),) * 4, torch.tensor(float("-inf"))), "1 NaN/Inf"),
    (torch.randn(2, 3, 3, 4).index_put_((torch.tensor([0]), torch.tensor([2])), torch.tensor(float("nan"))), "12 NaN"),
    (torch.randn(2, 3, 3, 4).numpy(), "torch.Tensor"),
]


@pytest.mark.parametrize("x,msg", BAD_TOKENS, ids=lambda v: str(v)[:20] if isinstance(v, str) else "")
def test_bad_tokens(x, msg):
    with pytest.raises(SelectorError, match=msg) as e:
        select_tokens(x, 0.5)
    assert isinstance(e.value, ValueError)
    if hasattr(x, "shape") and isinstance(x, torch.Tensor):
        assert str(tuple(x.shape)) in str(e.value)


@pytest.mark.parametrize("r", [0, 0.0, -0.1, 1.5, float("nan"), float("inf"), "0.5", None, True])
def test_bad_retention(r):
    with pytest.raises(SelectorError, match="retention"):
        select_tokens(torch.randn(1, 3, 3, 2), r)


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        ({"window": 4}, "window must be odd"),
        ({"window": 0}, "window must be >= 1"),
        ({"past_window": 2}, "past_window must be odd"),
        ({"temporal_window": 0}, "temporal_window"),
        ({"grid": 0}, "grid must be >= 1"),
        ({"tau": 0}, "tau must be in"),
        ({"tau": -1.0}, "tau must be in"),
        ({"tau": float("nan")}, "tau"),
        ({"tau": float("inf")}, "tau must be finite"),
        ({"alpha": 1.5}, "alpha"),
        ({"rho": -0.1}, "rho"),
        ({"q": 0}, "q must be in"),
        ({"tau_alloc": 0}, "tau_alloc"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2, "min_tokens": 3}, "max_tokens"),
        ({"window": 5.0}, "window must be an int"),
        ({"grid": True}, "grid must be an int"),
        ({"grid_fusion": 1}, "grid_fusion"),
    ],
)
def test_bad_config(kwargs, msg):
    with pytest.raises(SelectorError, match=msg):
        SelectorConfig(**kwargs)


def test_max_tokens_too_small_for_k():
    with pytest.raises(SelectorError, match="max_tokens=2"):
        select_tokens(torch.randn(2, 4, 4, 3), 0.5, SelectorConfig(max_tokens=2, min_tokens=1))


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        SelectorConfig().alpha = 0.1  # type: ignore[misc]


def test_core_imports_only_torch():
    code = (
        "import sys, selector; "
        "bad = [m for m in ('numpy', 'gradio', 'decord', 'av', 'transformers', 'PIL', 'matplotlib') if sys.modules.get(m) is not None];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    # torch itself imports numpy when present; block it to prove the core does not need it
    block = "import sys; sys.modules['numpy'] = None; "
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", block + code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    x = tensor((6, 14, 14, 64), 7)
    for cfg in (SelectorConfig(), SelectorConfig(tau=0.05, grid_fusion=True)):
        a = select_tokens(x, 0.35, cfg)
        b = select_tokens(x.cuda(), 0.35, cfg)
        assert b.indices.is_cuda
        torch.testing.assert_close(b.score.cpu(), a.score, atol=1e-5, rtol=0)
        assert torch.equal(b.budgets.cpu(), a.budgets)
        agree = (b.keep.cpu() == a.keep).float().mean()
        assert float(agree) > 0.995  # only near-ties may flip


cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("cfg", [SelectorConfig(), SelectorConfig(tau=0.05, grid_fusion=True),
                                 SelectorConfig(window=3, temporal_window=1, grid=3)])
@pytest.mark.parametrize("r", [0.05, 0.35, 1.0])
def test_cuda_graph_replay_equals_eager(cfg, r):
    x = tensor((8, 14, 14, 96), 11).cuda()
    eager = select_tokens(x, r, cfg, timed=False)
    graph = select_tokens(x, r, cfg, cuda_graph=True)
    again = select_tokens(x, r, cfg, cuda_graph=True)  # a replay, not a capture
    for s in (graph, again):
        assert torch.equal(s.indices, eager.indices) and torch.equal(s.budgets, eager.budgets)
        assert torch.equal(s.score, eager.score) and torch.equal(s.fused, eager.fused)
        # fused rows are sums by atomics on a GPU: equal up to the order of additions
        torch.testing.assert_close(s.tokens, eager.tokens, atol=1e-5, rtol=1e-5)


@pytest.mark.cuda
@cuda_only
def test_cuda_reuse_of_the_maps_equals_a_fresh_fused_run():
    """On a GPU a fresh run takes the fused kernels, a reusing one the torch budgets and pick on the same maps."""
    x = tensor((8, 14, 14, 96), 5).cuda()
    base = select_tokens(x, 0.5)
    for r, cfg in ((0.1, SelectorConfig(alpha=0.8)), (0.35, SelectorConfig(rho=0.3, grid=3)),
                   (0.9, SelectorConfig(grid_fusion=True)), (1.0, SelectorConfig(min_tokens=2))):
        fresh, again = select_tokens(x, r, cfg), select_tokens(x, r, cfg, reuse=base)
        assert again.indices.is_cuda and torch.equal(again.entropy, base.entropy)
        assert torch.equal(again.score, fresh.score) and torch.equal(again.budgets, fresh.budgets), (r, cfg)
        assert float((again.keep == fresh.keep).float().mean()) > 0.995, (r, cfg)  # only near-ties may flip
    with pytest.raises(SelectorError, match="maps are on cuda"):
        select_tokens(x.cpu(), 0.3, reuse=base)


@pytest.mark.cuda
@cuda_only
def test_cuda_graph_outputs_do_not_alias_and_nan_is_caught():
    a, b = tensor((4, 10, 10, 32), 1).cuda(), tensor((4, 10, 10, 32), 2).cuda()
    sa = select_tokens(a, 0.3, cuda_graph=True)
    ia = sa.indices.clone()
    sb = select_tokens(b, 0.3, cuda_graph=True)
    assert torch.equal(sa.indices, ia) and not torch.equal(sa.indices, sb.indices)
    assert torch.equal(sb.indices, select_tokens(b, 0.3).indices)
    bad = b.clone()
    bad[1, 2, 3, 4] = float("nan")
    with pytest.raises(SelectorError, match="NaN/Inf"):
        select_tokens(bad, 0.3, cuda_graph=True)


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("shape", [(16, 27, 27, 1152), (16, 14, 14, 896), (3, 5, 7, 16)])
def test_cuda_banded_entropy_matches_reference_and_cpu(shape):
    from selector.backends.cpu import entropy_banded

    x = tensor(shape, 5)
    for cfg in (SelectorConfig(), SelectorConfig(tau=0.02)):
        xn = maps.normalize(x.cuda())
        fast, ref = entropy_banded(xn, cfg), maps.entropy_map(xn, cfg)
        assert float((fast - ref).abs().max()) < 2e-5
        cpu = entropy_banded(maps.normalize(x), cfg)
        assert float((fast.cpu() - cpu).abs().max()) < 2e-5
    sel_gpu, sel_cpu = select_tokens(x.cuda(), 0.35), select_tokens(x, 0.35)
    agree = float((sel_gpu.keep.cpu() == sel_cpu.keep).float().mean())
    assert agree > 0.995 and torch.equal(sel_gpu.budgets.cpu().sum(), sel_cpu.budgets.sum())


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("shape", [(16, 27, 27, 1152), (16, 14, 14, 896), (5, 9, 31, 64), (2, 1, 1, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_maps_match_reference(shape, dtype):
    from selector.backends import triton as triton_maps

    if not triton_maps.available():
        pytest.skip("triton is not installed")
    x = tensor(shape, 9).to(dtype)
    for cfg in (SelectorConfig(), SelectorConfig(tau=0.02, window=3, temporal_window=4, past_window=3)):
        h, raw, _ = triton_maps.maps_fused(x.cuda(), cfg)
        ref = maps.entropy_map(maps.normalize(x.float().cuda()), cfg)
        assert float((h - ref).abs().max()) < 2e-5
        torch.testing.assert_close(maps.minmax(raw), maps.gradient_map(x.cuda()), atol=2e-5, rtol=0)
    sel = select_tokens(x.cuda(), 0.35)  # the Triton path
    base = select_tokens(x.cuda(), 0.35, entropy_fn=maps.entropy_map)  # the portable path
    agree = float((sel.keep == base.keep).float().mean())
    assert agree > 0.995 and torch.equal(sel.budgets.sum(), base.budgets.sum())


@pytest.mark.cuda
@cuda_only
def test_cuda_grids_the_fused_path_does_not_take_use_the_banded_backend():
    from selector import backends
    from selector.backends.cpu import entropy_banded_raw

    x = tensor((3, 6, 40, 32), 4).cuda()  # 40 tokens wide: more than the Triton kernels take
    cfg = SelectorConfig()
    assert backends.choose(x, cfg) == "banded"
    ref = maps.entropy_map(maps.normalize(x), cfg)
    assert float((entropy_banded_raw(x, cfg) - ref).abs().max()) < 2e-5
    assert select_tokens(x, 0.3).num_tokens == num_kept(0.3, 3 * 6 * 40)


@pytest.mark.cuda
@cuda_only
def test_cuda_budget_kernel_equals_torch_budgets():
    from selector.backends import triton as triton_maps

    if not triton_maps.available():
        pytest.skip("triton is not installed")
    gen = torch.Generator().manual_seed(3)
    for _ in range(60):
        t, m = int(torch.randint(1, 257, (1,), generator=gen)), int(torch.randint(1, 800, (1,), generator=gen))
        k = int(torch.randint(1, t * m + 1, (1,), generator=gen))
        cfg = SelectorConfig(min_tokens=int(torch.randint(0, 9, (1,), generator=gen)),
                             tau_alloc=float(torch.rand(1, generator=gen)) + 0.01)
        score = (torch.rand(t, m, generator=gen) * 8).round() / 8
        cpu, _, w = allocate.frame_budgets(score, k, cfg)
        gpu = allocate.frame_budgets(score.cuda(), k, cfg)[0]
        assert torch.equal(gpu.cpu(), cpu), (t, m, k)
        lo, hi = min(cfg.min_tokens, m), m
        if k < t * lo:
            lo, hi = k // t, min(hi, -(-k // t))
        for sort in (False, True):  # both rankings, whatever the frame count picks
            assert torch.equal(triton_maps.budgets_triton(w.cuda(), k, lo, hi, m, sort=sort).cpu(), cpu), sort


extreme = st.sampled_from([0.0, -0.0, 1e-38, -1e-38, 1e-30, 1.0, -1.0, 1e30, -1e30, 3.4e38, -3.4e38, 7.0])


@settings(max_examples=120, deadline=None)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.integers(1, 5)),
       data=st.data(), cfg=configs, r=st.floats(1e-6, 1.0))
def test_fuzz_extreme_token_values(shape, data, cfg, r):
    """Huge, tiny, signed-zero and repeated values: finite maps in [0, 1], exact counts, the input's own rows,
    and the same selection as for the same tokens scaled by a power of two (cosines and min-max ignore scale)."""
    n = math.prod(shape)
    vals = data.draw(st.lists(extreme, min_size=n, max_size=n))
    x = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    sel = select_tokens(x, r, cfg)
    for m in (sel.entropy, sel.gradient, sel.score):
        assert bool(torch.isfinite(m).all()) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert sel.num_tokens == max(1, math.floor(r * shape[0] * shape[1] * shape[2] + 1e-9))
    assert int(sel.budgets.sum()) == sel.num_tokens
    assert bool(torch.isfinite(sel.tokens).all())
    assert torch.equal(sel.tokens[~sel.fused], x.reshape(n // shape[3], shape[3])[sel.indices[~sel.fused]])


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("shape", [(16, 27, 27, 1152), (16, 14, 14, 896), (5, 9, 31, 64), (3, 32, 32, 40),
                                   (2, 1, 1, 8), (40, 3, 5, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_pipeline_stages_equal_torch_stages(shape, dtype):
    """Each kernel of the fused GPU path against the torch stage it replaces, on the same inputs: maps
    within float rounding, scores bit for bit, pick (keep, rank, quota) and gather exactly."""
    from selector.backends import triton as triton_maps
    from selector.method.pipeline import _flat_indices

    if not triton_maps.available():
        pytest.skip("triton is not installed")
    x = tensor(shape, 21).to(dtype).cuda()
    t_, h_, w_, d_ = shape
    m = h_ * w_
    for cfg in (SelectorConfig(), SelectorConfig(tau=0.02, window=3, temporal_window=4, past_window=3, grid=3,
                                                 rho=0.8, alpha=0.3)):
        assert triton_maps.fused_usable(x, cfg)
        h, g, stats = triton_maps.maps_fused(x, cfg)
        assert float((h - maps.entropy_map(maps.normalize(x.float()), cfg)).abs().max()) < 2e-5
        torch.testing.assert_close(g, maps.gradient_magnitude(x), atol=1e-4, rtol=1e-5)
        assert torch.equal(stats[:, 2], x.float().abs().amax(-1).reshape(-1, w_).amax(-1))
        gn, score, sal, amax = triton_maps.scores_fused(h, g, stats, cfg)
        assert float(amax) == float(x.float().abs().max())
        assert torch.equal(gn, maps.minmax(g))
        assert torch.equal(score, (cfg.alpha * h + (1.0 - cfg.alpha) * maps.minmax(g)).clamp_(0.0, 1.0))
        flat = score.reshape(t_, m)
        nq = max(1, math.ceil(cfg.q * m))
        torch.testing.assert_close(sal, flat.topk(nq, dim=1).values.mean(1), atol=1e-6, rtol=0)
        for r in (0.05, 0.35, 1.0):
            k = num_kept(r, t_ * m)
            budgets, _, _ = allocate.frame_budgets(flat, k, cfg)
            got = triton_maps.pick_fused(flat, budgets, (h_, w_), cfg)
            want = allocate.pick(flat, budgets, (h_, w_), cfg)
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), (shape, cfg, r)
            idx = triton_maps.indices_fused(got[0], budgets, k)
            assert torch.equal(idx, _flat_indices(got[0].reshape(-1), k))
    sel = select_tokens(x, 0.35)  # the fused path end to end
    base = select_tokens(x, 0.35, entropy_fn=maps.entropy_map)  # the portable path
    assert float((sel.keep == base.keep).float().mean()) > 0.995
    assert torch.equal(sel.budgets.sum(), base.budgets.sum()) and sel.tokens.dtype == dtype
    assert torch.equal(sel.tokens, x.reshape(-1, d_)[sel.indices])


@pytest.mark.cuda
@cuda_only
def test_cuda_graph_checks_values_through_the_fused_statistics():
    """On the fused path the graph's NaN/Inf and range check comes from the prep kernel's row statistics."""
    x = tensor((4, 10, 10, 32), 3).cuda()
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        bad = x.clone()
        bad[3, 9, 9, 31] = bad_value
        with pytest.raises(SelectorError, match="NaN/Inf"):
            select_tokens(bad, 0.3, cuda_graph=True)
    huge = x * 2.0**60  # outside SAFE_RANGE: the graph hands over to the rescaled eager run
    a, b = select_tokens(huge, 0.3, cuda_graph=True), select_tokens(x, 0.3, cuda_graph=True)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.tokens, huge.reshape(-1, 32)[a.indices])


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("launch", [dict(), dict(PREC="tf32x3"), dict(PQR=4, PQC=8, PNK=64), dict(PQR=8, PQC=4),
                                    dict(PQR=4, PQC=4, PNK=64, PQR16=4, PQC16=4, PNK16=64)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_entropy_kernels_match_reference(launch, dtype):
    """The entropy kernel with every patch and precision choice the sweep tool may pick, on the GPU, several grids and
    neighbourhoods; the features read through the address table give the same maps."""
    from selector.backends import triton as triton_maps

    if not triton_maps.available():
        pytest.skip("triton is not installed")
    for shape in ((16, 27, 27, 1152), (5, 9, 31, 64), (3, 1, 7, 40)):
        x = tensor(shape, 5).to(dtype).cuda()
        for cfg in (SelectorConfig(), SelectorConfig(tau=0.02, window=7, temporal_window=2, past_window=5)):
            ref = maps.entropy_map(maps.normalize(x.float()), cfg)
            h, g, st = triton_maps.maps_fused(x, cfg, **launch)
            assert float((h - ref).abs().max()) < 2e-5, (shape, cfg)
            tab = torch.tensor([x.data_ptr(), 0], dtype=torch.int64, device="cuda")
            got = triton_maps.maps_fused(torch.zeros_like(x), cfg, tab=tab, **launch)
            assert all(torch.equal(a, b) for a, b in zip(got, (h, g, st), strict=True))


@pytest.mark.cuda
@cuda_only
def test_cuda_graph_reads_each_new_tensor_in_place():
    """The fused graph reads the caller's features through its address table, and the kept rows are
    gathered from them on demand into a fresh tensor: new tensors of the captured shape (also
    non-contiguous ones) give the eager result, earlier Selections keep their rows, and the cache does not
    keep inputs alive."""
    import gc
    import weakref

    cfg = SelectorConfig()
    xs = [tensor((6, 12, 13, 64), s).cuda() for s in (31, 32)]
    xs.append(tensor((6, 12, 64, 13), 33).cuda().transpose(2, 3))  # same shape, not contiguous
    xs.append(tensor((6 * 12 * 13 * 64 + 1,), 35).cuda()[1:].view(6, 12, 13, 64))  # 4 bytes off alignment
    outs = [select_tokens(x, 0.3, cfg, cuda_graph=True) for x in xs]
    assert all(o.rows is None and o.source is x for o, x in zip(outs, xs, strict=True))  # no rows copied yet
    rows = [o.tokens.clone() for o in outs]
    for x, o, r in zip(xs, outs, rows, strict=True):
        e = select_tokens(x, 0.3, cfg, timed=False)
        assert torch.equal(o.indices, e.indices) and torch.equal(o.entropy, e.entropy)
        assert torch.equal(o.tokens, r) and torch.equal(o.tokens, x.reshape(-1, 64)[o.indices])
    assert len({o.tokens.data_ptr() for o in outs}) == 4 and xs[-1].data_ptr() % 16 == 4
    for shape in ((6, 12, 13, 64), (2, 5, 5, 16)):  # a replay, then a capture
        probe = tensor(shape, 34).cuda()
        ref = weakref.ref(probe)
        select_tokens(probe, 0.3, cfg, cuda_graph=True)
        del probe
        gc.collect()
        assert ref() is None, shape


def test_graph_output_layout_round_trips_every_field():
    """The CUDA-graph path packs a Selection's tensors into one byte buffer and hands out typed views of a
    clone; the packing itself is device-independent, so it is checked here on the CPU."""
    from dataclasses import fields

    from selector.backends.graphs import _layout, _views

    sel = select_tokens(tensor((3, 5, 7, 12), 4), 0.3, SelectorConfig(grid_fusion=True))
    assert sel.rows is not None  # grid fusion computes its rows: they are packed, the input (source) is not
    layout = _layout(sel)
    buf = torch.full((layout[1],), 255, dtype=torch.uint8)
    dst = _views(buf, layout)
    assert set(dst) == {f.name for f in fields(sel) if isinstance(getattr(sel, f.name), torch.Tensor)} - {"source"}
    assert "rows" in dst
    for name, view in dst.items():
        view.copy_(getattr(sel, name))
    back = _views(buf.clone(), layout)
    for name, view in back.items():
        want = getattr(sel, name)
        assert view.dtype == want.dtype and view.shape == want.shape and torch.equal(view, want), name
        assert view.data_ptr() % 16 == 0, name


_FAULTS = """
import resource, sys, torch
from selector.cpu_tuning import tune_malloc
tuned = tune_malloc()
def faults_of_a_fresh_48mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(12 << 20).fill_(1.0)  # 48 MB written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [faults_of_a_fresh_48mb_tensor() for _ in range(10)]
keep = torch.empty(12 << 20).fill_(1.0)  # a live 48 MB tensor: huge pages show in AnonHugePages
huge = [int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")]
print(tuned, huge[0] if huge else -1, *faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_malloc_tuning_lets_large_tensors_reuse_freed_pages(setting):
    """With the app's malloc setting, once the heap has settled (torch's 64-byte aligned allocations leave a
    few holes first) a new 48 MB tensor reuses freed pages (few page faults); without it, glibc maps fresh pages
    every time (~12 000 faults of 4 KiB). The setting also asks torch for transparent huge pages: where the
    kernel grants them (THP mode `madvise` or `always`), a live 48 MB tensor lies mostly on 2 MB pages.
    ENTROPY_SELECT_MALLOC_TUNING=0 switches both off."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env["ENTROPY_SELECT_MALLOC_TUNING"] = setting
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split()
    tuned, huge_kb, faults = out[0] == "True", int(out[1]), [int(v) for v in out[2:]]
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage")
        thp_mode, defrag = (thp / "enabled").read_text(), (thp / "defrag").read_text()
    except OSError:
        thp_mode, defrag = "[never]", "[never]"
    # a madvise'd region gets its huge pages at the first touch when the kernel may compact memory for it
    granted = "[never]" not in thp_mode and any(m in defrag for m in ("[always]", "[madvise]", "[defer+madvise]"))
    if setting == "1":
        assert tuned and max(faults[-3:]) < 1000, faults
        if granted:
            assert huge_kb >= 24 << 10, (thp_mode, defrag, huge_kb)  # at least half of the 48 MB on 2 MB pages
        elif "[never]" in thp_mode:
            assert huge_kb <= 0, (thp_mode, huge_kb)
    else:
        assert not tuned and min(faults) > 6000, faults
        if "[always]" not in thp_mode:  # `always` gives huge pages to any large mapping, asked or not
            assert huge_kb <= 0, (thp_mode, huge_kb)


def test_bench_prints_every_column_and_agrees_with_the_reference():
    """`python -m selector.bench` on a small grid: one row per retention with the selection time, the time
    with the rows copied out, both spreads, the reference time and speed-up per row, and the count of kept
    tokens that differ from the reference's (0 here). Checks the table, not the timings."""
    r = subprocess.run([sys.executable, "-m", "selector.bench", "--device", "cpu", "--grid", "3x6x7x16", "--repeats",
                        "3"], capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    head = next(line for line in lines if line.startswith("grid"))
    for col in ("median ms", "Mtok/s", "+rows ms", "peak MiB", "max/min", "+rows", "ref ms", "speed-up"):
        assert col in head, col
    table = [line.split() for line in lines if line.split() and line.split()[-1].endswith("×")]
    table = [row[1:] if i == 0 else row for i, row in enumerate(table)]  # the first row starts with the grid
    assert [float(row[0]) for row in table] == [0.05, 0.1, 0.35, 0.5, 0.9]
    assert [int(row[1]) for row in table] == [num_kept(q, 126) for q in (0.05, 0.1, 0.35, 0.5, 0.9)]
    assert [len(row) for row in table] == [11, 9, 9, 9, 9]  # the spreads only on the first row
    assert "by retention: 0 of 6, 0 of 12, 0 of 44, 0 of 63, 0 of 113" in r.stdout


def test_bench_times_the_retentions_interleaved():
    """The bench takes one call of each retention per round, the order rotated every round, so a slow spell
    of the host is shared by all retentions (max/min compares retentions, not moments)."""
    from selector.bench.selector import _interleaved

    calls: list[int] = []
    times = _interleaved(torch.device("cpu"), [lambda j=j: calls.append(j) for j in range(3)], 4, warmup=2)
    assert calls[:6] == [0, 0, 1, 1, 2, 2]  # warm-up of each
    assert calls[6:] == [0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 1, 2]
    assert [len(t) for t in times] == [4, 4, 4] and all(v >= 0 for t in times for v in t)
