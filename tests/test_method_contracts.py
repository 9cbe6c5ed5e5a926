"""Small contracts of the selector core that the formula and property tests leave loose: the exact words of its
refusals, the stages it times, the caller's maps it uses, where `gather_into` writes. Fast; part of the mutation
run's selection (pyproject.toml, [tool.mutmut])."""

from __future__ import annotations

import math
import re

import pytest
import torch
from strategies import tensor

from selector import SelectorConfig, SelectorError, select_tokens
from selector.method import maps


def _refused(message: str):
    return pytest.raises(SelectorError, match="^" + re.escape(message) + "$")


def test_reuse_refusals_say_exactly_what_is_wrong():
    x = tensor((2, 5, 6, 4), 1)
    first = select_tokens(x, 0.3)
    with _refused("reuse must be a Selection, got dict"):
        select_tokens(x, 0.3, reuse={})
    with _refused("reuse takes the maps of an earlier Selection: do not pass entropy_fn or gradient_fn too"):
        select_tokens(x, 0.3, reuse=first, gradient_fn=maps.gradient_map)
    with _refused("reuse takes the maps of an earlier Selection: do not pass entropy_fn or gradient_fn too"):
        select_tokens(x, 0.3, reuse=first, entropy_fn=maps.entropy_map)
    with _refused("reuse: its maps are for a (2, 5, 6) grid, the tokens are (2, 5, 5)"):
        select_tokens(x[:, :, :5], 0.3, reuse=first)
    with _refused("reuse: the maps depend on window 5 → 3; select without reuse"):
        select_tokens(x, 0.3, SelectorConfig(window=3), reuse=first)
    with _refused("reuse: the maps depend on tau 1.0 → 0.5, past_window 3 → 1; select without reuse"):
        select_tokens(x, 0.3, SelectorConfig(tau=0.5, past_window=1), reuse=first)
    with _refused("reuse: its maps were computed from other tokens (they hold only for the values the "
                  "Selection was made from); select without reuse"):
        select_tokens(x + 1, 0.3, reuse=first)
    assert torch.equal(select_tokens(x.clone(), 0.3, reuse=first).indices, first.indices)  # equal values: reused


def test_callers_maps_are_used_and_timed_as_the_backends_are():
    x = tensor((3, 6, 7, 4), 2)
    flat = torch.zeros(3, 6, 7)
    flat[:, 2, 3] = 1.0  # one place stands out in the gradient the caller gives

    def gradient(tokens):
        return flat

    sel = select_tokens(x, 0.1, SelectorConfig(alpha=0.0), gradient_fn=gradient)
    assert torch.equal(sel.gradient, flat) and torch.equal(sel.entropy, select_tokens(x, 0.1).entropy)
    half = torch.full((3, 6, 7), 0.5)
    own = select_tokens(x, 0.1, entropy_fn=lambda unit, cfg: half)
    assert torch.equal(own.entropy, half) and torch.equal(own.gradient, select_tokens(x, 0.1).gradient)
    assert bool(sel.keep[:, 2, 3].all())  # the score is that gradient alone (α = 0): its peak is kept in every frame
    for s in (sel, select_tokens(x, 0.1, entropy_fn=maps.entropy_map), select_tokens(x, 0.1)):
        assert {"entropy", "gradient", "budgets", "select", "total"} <= set(s.timings_ms), s.timings_ms
        assert all(v >= 0 for v in s.timings_ms.values())
    assert select_tokens(x, 0.1, timed=False, gradient_fn=gradient).timings_ms == {}


def test_gather_into_writes_the_callers_buffer_and_names_what_is_wrong_with_it():
    x = tensor((2, 6, 7, 5), 4)
    sel = select_tokens(x, 0.3)
    k = sel.num_tokens
    want = x.reshape(-1, 5)[sel.indices]
    out = torch.full((k, 5), float("nan"))
    got = sel.gather_into(out)
    assert got.data_ptr() == out.data_ptr() and torch.equal(out, want)  # written in place, that buffer returned
    with _refused(f"gather_into needs a contiguous ({k}, 5) buffer, got ({k + 1}, 5)"):
        sel.gather_into(torch.empty(k + 1, 5))
    with _refused(f"gather_into needs a contiguous ({k}, 5) buffer, got non-contiguous ({k}, 5)"):
        sel.gather_into(torch.empty(5, k).t())
    with _refused("gather_into needs a torch.float32 buffer, got torch.float64"):
        sel.gather_into(torch.empty(k, 5, dtype=torch.float64))
    fusing = select_tokens(x, 0.3, SelectorConfig(grid_fusion=True))
    assert fusing.gather_into() is fusing.rows  # merged rows: computed with the selection, handed out as they are
    buf = torch.empty_like(fusing.rows)
    assert fusing.gather_into(buf).data_ptr() == buf.data_ptr() and torch.equal(buf, fusing.rows)
    kept = type(fusing)(**{**fusing.__dict__, "source": None})  # rows without the features: still gathered
    assert torch.equal(kept.gather_into(), fusing.rows)
    bare = type(sel)(**{**sel.__dict__, "source": None, "rows": None})
    with _refused("this Selection holds neither its rows nor the features they come from"):
        bare.gather_into()


@pytest.mark.parametrize("seed", range(12))
def test_fusion_chooses_cells_makes_room_and_merges_as_the_method_states(seed):
    """allocate.fuse against naive.fuse on picks of scores with ties and zero cells, budgets from below the number of
    cells to most of a frame: the same kept and anchor masks, the same fused rows."""
    import naive

    from selector.method import allocate

    g = torch.Generator().manual_seed(seed)
    t_, h_, w_, d_ = 3, 5 + seed % 3, 6 + seed % 2, 3
    grid_, rho = (2, 3)[seed % 2], (0.25, 0.5, 1.0)[seed % 3]
    m, g2 = h_ * w_, grid_ * grid_
    score = torch.randint(0, 5, (t_, m), generator=g).float() / 4  # quarters: exact sums, many ties
    score[1, : m // 2] = 0.0  # cells of zeros: uniform weights there
    if seed % 4 == 0:
        score[2] = 0.0  # a frame of zeros
    budgets = torch.tensor([max(1, g2 - 1), m // 3, m - 2 - seed % 3])[torch.randperm(3, generator=g)]
    x = torch.randn(t_, h_, w_, d_, generator=g)
    cfg = SelectorConfig(grid=grid_, rho=rho)
    keep, rank, quota = allocate.pick(score, budgets, (h_, w_), cfg)
    cells = allocate.cell_ids(h_, w_, grid_, torch.device("cpu"))
    got_keep, got_anchor, got_rows = allocate.fuse(x, score, keep, rank, quota, budgets, cells, g2)
    want_keep, want_anchor, want_rows = naive.fuse(x, score, keep, rank, quota, budgets.tolist(), cells.tolist(), g2)
    assert torch.equal(got_anchor, want_anchor) and torch.equal(got_keep, want_keep)
    assert bool(got_anchor.any())
    assert torch.equal(got_keep.sum(1), budgets)  # a fused token takes a pick's place: B_f rows per frame
    for (f, p), row in want_rows.items():
        torch.testing.assert_close(got_rows[f, p].double(), row, atol=1e-5, rtol=1e-5)


def test_bad_tokens_and_retentions_are_refused_in_words():
    x = tensor((2, 3, 4, 5), 3)
    with _refused("tokens must be a torch.Tensor of shape (T, H, W, D), got list"):
        select_tokens([1.0], 0.3)
    with _refused("tokens must have 4 dims (T, H, W, D), got 3 dims with shape (2, 3, 4)"):
        select_tokens(x[..., 0], 0.3)
    with _refused("tokens has an empty dimension: shape (2, 0, 4, 5) (T, H, W, D must all be >= 1)"):
        select_tokens(x[:, :0], 0.3)
    with _refused("tokens must be a float tensor, got dtype torch.int64 with shape (2, 3, 4, 5)"):
        select_tokens(x.long(), 0.3)
    for bad in (True, "0.5", None):
        with _refused(f"retention must be a number in (0, 1], got {bad!r}"):
            select_tokens(x, bad)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with _refused(f"retention must be in (0, 1], got {bad} for tokens of shape (2, 3, 4, 5)"):
            select_tokens(x, bad)
    assert select_tokens(x, 1.0).num_tokens == 24 and select_tokens(x, 1).num_tokens == 24
    assert select_tokens(tensor((1, 1, 1, 1), 0), 0.5).num_tokens == 1  # every dimension 1 is a grid


def test_k_and_the_defaults_of_select_tokens():
    from selector.method.pipeline import num_kept

    assert [num_kept(r, n) for r, n in ((1e-9, 10), (0.57, 100), (0.35, 11664), (1.0, 7), (0.999, 7))] == \
        [1, 57, 4082, 7, 6]
    x = tensor((2, 5, 6, 4), 5)  # H, W and D all differ: K counts T·H·W
    sel = select_tokens(x)
    assert sel.num_tokens == num_kept(0.35, 60) == 21 and sel.retention == 0.35 and sel.config == SelectorConfig()
    assert sel.source is x and sel.fused.dtype == torch.bool and sel.fused.shape == (21,) and not bool(sel.fused.any())
    assert select_tokens(x, 0.5).retention == 0.5


def test_the_score_and_frame_weights_follow_the_formulas():
    x = tensor((3, 5, 6, 4), 6)
    for cfg in (SelectorConfig(alpha=0.3), SelectorConfig(alpha=0.7, invert_entropy=True, q=0.5, tau_alloc=0.2)):
        sel = select_tokens(x, 0.4, cfg)
        h = 1.0 - sel.entropy if cfg.invert_entropy else sel.entropy
        torch.testing.assert_close(sel.score, (cfg.alpha * h + (1 - cfg.alpha) * sel.gradient).clamp(0, 1))
        nq = max(1, math.ceil(cfg.q * 30))
        sal = sel.score.reshape(3, -1).topk(nq, dim=1).values.mean(1)
        torch.testing.assert_close(sel.frame_saliency, sal)
        torch.testing.assert_close(sel.frame_weights, torch.softmax(sal / cfg.tau_alloc, 0))


def test_stage_times_add_up_to_the_total_in_milliseconds():
    import time

    x = tensor((4, 9, 9, 8), 7)
    select_tokens(x, 0.3)  # warm
    t0 = time.perf_counter()
    sel = select_tokens(x, 0.3)
    wall_ms = (time.perf_counter() - t0) * 1e3
    t = dict(sel.timings_ms)
    total = t.pop("total")
    assert set(t) == {"entropy", "gradient", "budgets", "select", "indices"}
    assert sum(t.values()) == pytest.approx(total, rel=1e-6) and 0 < total <= wall_ms
    assert total > wall_ms / 100  # milliseconds, as the name says (not seconds, not microseconds)
    assert select_tokens(x, 0.3, timed=False).timings_ms == {}


def test_features_far_from_one_are_rescaled_by_a_power_of_two():
    from selector.method.pipeline import SAFE_RANGE, check_finite, rescale_for

    ones = torch.ones(2, 2, 2, 2)
    assert rescale_for(0.0, ones) == 1.0 and rescale_for(1.0, ones) == 1.0
    assert rescale_for(SAFE_RANGE[0], ones) == 1.0 and rescale_for(SAFE_RANGE[1], ones) == 1.0
    assert rescale_for(2.0**41, ones) == 2.0**-41 and rescale_for(3 * 2.0**50, ones) == 2.0**-52
    assert rescale_for(2.0**-45, ones) == 2.0**45
    big = tensor((2, 4, 5, 3), 8)
    big[0, 0, 0, 0] = -(2.0**60)  # the largest |value| is a negative one
    assert check_finite(big) == 2.0**-60 and check_finite(big.abs()) == 2.0**-60
    assert check_finite(torch.zeros(1, 2, 2, 2)) == 1.0
    bad = big.clone()
    bad[1, 1, 1, 1], bad[0, 2, 2, 2] = float("nan"), float("inf")
    for tokens in (bad, bad.flip(0)):
        with _refused("tokens contain 2 NaN/Inf values (shape (2, 4, 5, 3))"):
            check_finite(tokens)
    with _refused("tokens contain 1 NaN/Inf values (shape (2, 4, 5, 3))"):
        select_tokens(torch.where(torch.arange(120).reshape(2, 4, 5, 3) == 7, float("inf"), big), 0.3)
    scaled = big * 2.0**-60
    assert torch.equal(select_tokens(big, 0.3).indices, select_tokens(scaled, 0.3).indices)


@pytest.mark.parametrize("seed", range(30))
def test_frame_budgets_are_the_papers_with_the_documented_redistribution(seed):
    """allocate.frame_budgets against naive.budgets over budgets at and near their limits: K = T·B_max, K = T·B_min,
    K below T·B_min, a B_max that binds, peaked and flat weights, q small enough that one score is the mean."""
    import naive

    from selector.method import allocate

    g = torch.Generator().manual_seed(seed)
    t_, m = 2 + seed % 5, 6 + seed % 7
    b_min = seed % 4
    b_max = None if seed % 3 == 0 else min(m, b_min + 1 + seed % 5)
    top = t_ * (m if b_max is None else b_max)
    k = [top, t_ * b_min, max(1, t_ * b_min - 1), 1 + (seed * 7) % top, top - 1][seed % 5]
    k = max(1, min(k, top))
    score = torch.rand(t_, m, generator=g) ** (1 + seed % 4)
    cfg = SelectorConfig(min_tokens=b_min, max_tokens=b_max, q=(0.01, 0.25, 1.0)[seed % 3],
                         tau_alloc=(0.05, 0.5, 2.0)[seed % 3])
    budgets, saliency, weights = allocate.frame_budgets(score, k, cfg)
    assert budgets.tolist() == naive.budgets(score, k, cfg), (k, b_min, b_max)
    nq = max(1, math.ceil(cfg.q * m))
    torch.testing.assert_close(saliency, score.topk(nq, dim=1).values.mean(1))
    torch.testing.assert_close(weights, torch.softmax(saliency / cfg.tau_alloc, 0))
    if b_max is not None:
        with _refused(f"max_tokens={b_max} allows at most {top} tokens over {t_} frames of {m} tokens, fewer than "
                      f"K={top + 1}; raise max_tokens or lower the retention"):
            allocate.frame_budgets(score, top + 1, cfg)


def test_sort_keys_order_scores_as_floats_and_clamp_them():
    from selector.method import allocate

    s = torch.tensor([0.5, -0.0, 0.0, 1e-8, 2e-8, 1.0, 0.7])
    desc = allocate._desc_bits(s)
    assert desc[1] == desc[2]  # -0.0 is 0.0
    assert torch.equal(torch.sort(desc, stable=True).indices, torch.tensor([5, 6, 0, 4, 3, 1, 2]))
    asc = allocate._asc_bits32(torch.tensor([-0.5, -0.0, 0.0, 0.25, 1.0, 1.5]))
    assert torch.equal(asc, torch.tensor([0.0, 0.0, 0.0, 0.25, 1.0, 1.0]).view(torch.int32))


def test_minmax_and_a_constant_gradient():
    g = torch.tensor([[0.2, 0.5], [0.7, 0.2]])
    torch.testing.assert_close(maps.minmax(g), (g - 0.2) / 0.5)  # a span below 1
    torch.testing.assert_close(maps.minmax(g * 40), (g - 0.2) / 0.5)
    assert torch.equal(maps.minmax(torch.full((2, 3), 7.0)), torch.zeros(2, 3))


@pytest.mark.parametrize("hw", [(1, 1), (1, 3), (2, 2), (3, 2), (3, 3), (4, 1)])
def test_gradient_on_small_frames_is_the_reference(hw):
    """Central differences inside, one-sided at the borders, nothing along a side of one token: frames of 1–4."""
    import naive

    x = tensor((2, *hw, 5), sum(hw))
    torch.testing.assert_close(maps.gradient_map(x).double(), naive.gradient(x).double(), atol=1e-6, rtol=1e-5)


def test_frames_go_through_the_cpu_paths_in_chunks_of_about_chunk_bytes(monkeypatch):
    frame = 12 * 10 * 8 * 4  # bytes of one frame of fp32 features
    x = torch.zeros(1, 1, 1, 1).expand(9, 12, 10, 8)
    monkeypatch.setattr(maps, "CHUNK_BYTES", 4 * frame)
    assert maps.frames_per_chunk(x) == 4
    monkeypatch.setattr(maps, "CHUNK_BYTES", 4 * frame - 1)
    assert maps.frames_per_chunk(x) == 3
    monkeypatch.setattr(maps, "CHUNK_BYTES", frame // 2)
    assert maps.frames_per_chunk(x) == 1  # a frame larger than a chunk goes alone
    monkeypatch.setattr(maps, "CHUNK_BYTES", 100 * frame)
    assert maps.frames_per_chunk(x) == 9
    assert maps.frames_per_chunk(torch.empty(9, 12, 10, 8, device="meta")) == 9  # not a CPU: one chunk
    y = tensor((9, 5, 6, 4), 9)
    whole = maps.gradient_map(y)
    monkeypatch.setattr(maps, "CHUNK_BYTES", 2 * 5 * 6 * 4 * 4)  # two frames a chunk: the same values
    assert torch.equal(maps.gradient_map(y), whole)


def test_the_entropy_of_a_uniform_neighbourhood_is_one_at_most():
    x = torch.ones(3, 5, 5, 4)  # every token alike: every neighbourhood uniform
    h = select_tokens(x, 0.3).entropy
    assert float(h.max()) == 1.0 and float(h.min()) >= 0.0


def test_fused_rows_keep_the_inputs_dtype_and_scale():
    x = tensor((2, 8, 8, 6), 5)
    cfg = SelectorConfig(grid=2, grid_fusion=True, rho=0.25)
    ref = select_tokens(x, 0.4, cfg)
    big = select_tokens(x * 2.0**60, 0.4, cfg)  # rescaled inside by 2⁻⁶⁰: the rows are the input's scale
    assert torch.equal(big.indices, ref.indices) and bool(ref.fused.any())
    torch.testing.assert_close(big.tokens, ref.tokens * 2.0**60, rtol=1e-5, atol=0)
    half = select_tokens(x.bfloat16(), 0.4, cfg)
    assert half.tokens.dtype == torch.bfloat16 and bool(half.fused.any())


def test_a_backend_registered_again_replaces_the_one_of_its_name(monkeypatch):
    from selector.method import stages

    monkeypatch.setattr(stages, "_REGISTRY", list(stages._REGISTRY))
    before = [b.name for b in stages.registered()]

    class Extra(stages.Backend):
        name, priority = "extra", 5

        def usable(self, tokens, cfg):
            return False

    stages.register(Extra())
    stages.register(Extra())
    names = [b.name for b in stages.registered()]
    assert sorted(names) == sorted(before + ["extra"]) and names.count("extra") == 1
    assert names == [b.name for b in sorted(stages.registered(), key=lambda b: -b.priority)]
    with pytest.raises(TypeError, match="^register takes a Backend instance, got object$"):
        stages.register(object())


def test_the_portable_backend_times_its_two_maps():
    from selector.method import stages
    from selector.method.pipeline import Clock

    clock = Clock(torch.device("cpu"), True)
    found = stages.Backend().maps(tensor((2, 4, 5, 3), 1), SelectorConfig(), clock)
    assert set(clock.laps) == {"entropy", "gradient"} and found.entropy.shape == (2, 4, 5)
