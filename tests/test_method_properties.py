"""Invariants of select_tokens (hypothesis), edge cases, errors: the method (selector/method)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import configs, odd, shapes, tensor

from selector import SelectorConfig, SelectorError, select_tokens
from selector.method import allocate, maps


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
