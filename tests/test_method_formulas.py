"""Each vectorized formula against its per-token loop in tests/naive.py (tiny grids)."""

from __future__ import annotations

import math

import naive
import pytest
import torch

from selector import SelectorConfig, select_tokens
from selector.method import allocate, maps


def grid(t, h, w, d, seed=0, dtype=torch.float32):
    return torch.randn(t, h, w, d, generator=torch.Generator().manual_seed(seed)).to(dtype)


CONFIGS = [
    SelectorConfig(),
    SelectorConfig(tau=0.05),
    SelectorConfig(window=3, temporal_window=1),
    SelectorConfig(window=7, temporal_window=4, past_window=5, tau=0.3),
    SelectorConfig(window=1, temporal_window=2, past_window=1),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"k{c.window}-Kt{c.temporal_window}-kp{c.past_window}-tau{c.tau}")
@pytest.mark.parametrize("shape", [(3, 5, 6, 4), (1, 1, 1, 3), (2, 1, 7, 2), (4, 3, 3, 1)])
@pytest.mark.parametrize("impl", ["reference", "banded"])
def test_entropy_matches_naive_loop(cfg, shape, impl):
    from selector.backends.cpu import entropy_banded

    x = grid(*shape)
    fn = maps.entropy_map if impl == "reference" else entropy_banded
    got = fn(maps.normalize(x), cfg)
    want = naive.entropy(x, cfg)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=0)


def test_entropy_of_homogeneous_neighbourhood_is_maximal():
    # FACTS: identical neighbours give a uniform distribution, i.e. Ĥ = 1, not 0.
    x = torch.ones(2, 5, 5, 8)
    h = maps.entropy_map(maps.normalize(x), SelectorConfig())
    assert torch.allclose(h, torch.ones_like(h))


def test_entropy_near_one_at_tau_one_and_spread_at_small_tau():
    x = grid(4, 8, 8, 32)
    h1 = maps.entropy_map(maps.normalize(x), SelectorConfig(tau=1.0))
    h2 = maps.entropy_map(maps.normalize(x), SelectorConfig(tau=0.02))
    assert float(h1.min()) > 0.95
    assert float(h2.max() - h2.min()) > 10 * float(h1.max() - h1.min())


@pytest.mark.parametrize("shape", [(2, 4, 5, 3), (1, 1, 6, 2), (3, 6, 1, 2), (1, 1, 1, 1), (2, 2, 2, 5)])
def test_gradient_matches_naive_loop(shape):
    x = grid(*shape, seed=3)
    torch.testing.assert_close(maps.gradient_map(x).double(), naive.gradient(x), atol=1e-5, rtol=0)


def test_gradient_min_max_over_whole_video():
    x = grid(3, 4, 4, 6)
    x[1] *= 10  # a high-contrast frame dominates the video-wide max
    g = maps.gradient_map(x)
    assert float(g[1].max()) == pytest.approx(1.0)
    assert float(g[0].max()) < 0.5 and float(g.min()) == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "cfg,k",
    [
        (SelectorConfig(), 40),
        (SelectorConfig(tau_alloc=0.02), 40),
        (SelectorConfig(min_tokens=10), 20),  # K < T·B_min
        (SelectorConfig(max_tokens=9, tau_alloc=0.01), 45),  # B_max binds
        (SelectorConfig(q=1.0, tau_alloc=5.0), 7),
    ],
)
def test_budgets_match_naive_loop(seed, cfg, k):
    score = torch.rand(6, 12, generator=torch.Generator().manual_seed(seed))
    got, sal, w = allocate.frame_budgets(score, k, cfg)
    assert got.tolist() == naive.budgets(score, k, cfg)
    assert int(got.sum()) == k
    nq = max(1, math.ceil(cfg.q * 12))
    torch.testing.assert_close(sal, score.sort(1, descending=True).values[:, :nq].mean(1))
    torch.testing.assert_close(w, torch.softmax(sal / cfg.tau_alloc, 0))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "shape,cfg",
    [
        ((3, 8, 8), SelectorConfig()),
        ((2, 9, 7), SelectorConfig(grid=3, rho=1.0)),
        ((2, 5, 5), SelectorConfig(grid=4, rho=0.2)),
        ((2, 2, 3), SelectorConfig(grid=4)),  # fewer rows than grid cells
        ((1, 6, 6), SelectorConfig(grid=1, rho=0.0)),
    ],
)
def test_pick_matches_naive_loop(seed, shape, cfg):
    t, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    score = (torch.rand(shape, generator=gen) * 8).round() / 8  # many ties on purpose
    b = torch.randint(1, h * w + 1, (t,), generator=gen)
    keep, _, _ = allocate.pick(score.reshape(t, -1), b, (h, w), cfg)
    assert torch.equal(keep.view(shape), naive.pick(score, b.tolist(), cfg))


@pytest.mark.parametrize("seed", range(3))
def test_select_tokens_end_to_end_matches_naive(seed):
    cfg = SelectorConfig(tau=0.1)
    x = grid(4, 6, 7, 5, seed=seed)
    sel = select_tokens(x, 0.3, cfg)
    h = naive.entropy(x, cfg)
    g = naive.gradient(x)
    s = cfg.alpha * h + (1 - cfg.alpha) * g
    torch.testing.assert_close(sel.score.double(), s, atol=3e-5, rtol=0)
    b = naive.budgets(sel.score.reshape(4, -1), sel.num_tokens, cfg)
    assert sel.budgets.tolist() == b
    assert torch.equal(sel.keep, naive.pick(sel.score, b, cfg))


def test_grid_fusion_rows_are_score_weighted_means_of_discarded_cells():
    cfg = SelectorConfig(grid=2, grid_fusion=True, rho=0.25)
    x = grid(2, 8, 8, 6, seed=5)
    plain = select_tokens(x, 0.4, SelectorConfig(grid=2, rho=0.25))
    sel = select_tokens(x, 0.4, cfg)
    assert sel.num_tokens == plain.num_tokens and int(sel.fused.sum()) > 0
    assert torch.equal(sel.budgets, plain.budgets)
    flat_x = x.reshape(-1, 6)
    score = sel.score.reshape(-1)
    kept_real = set(sel.indices[~sel.fused].tolist())
    for row in torch.nonzero(sel.fused).flatten().tolist():
        anchor = int(sel.indices[row])
        f, pos = divmod(anchor, 64)
        cell = naive.cell_of(pos // 8, pos % 8, 8, 8, 2)
        members = [
            f * 64 + p for p in range(64)
            if naive.cell_of(p // 8, p % 8, 8, 8, 2) == cell and f * 64 + p not in kept_real
        ]
        w = score[members].double()
        want = (flat_x[members].double() * w[:, None]).sum(0) / w.sum()
        torch.testing.assert_close(sel.tokens[row].double(), want, atol=1e-5, rtol=1e-5)
        best = max(members, key=lambda i: (float(score[i]), -i))
        assert anchor == best
    # real rows are untouched input tokens
    real = sel.indices[~sel.fused]
    assert torch.equal(sel.tokens[~sel.fused], flat_x[real])
