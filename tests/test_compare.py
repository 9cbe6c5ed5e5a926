"""The methods registry (selector.compare): exactly K rows for every method, each method's stated behaviour,
coverage against a naive loop, the command line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import ROOT, SAMPLE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import tensor

from selector import SelectorConfig, SelectorError, select_tokens
from selector.compare import METHODS, compress, coverage, coverage_report
from selector.method.pipeline import num_kept


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 7), st.integers(1, 6)),
       r=st.floats(1e-3, 1.0), seed=st.integers(0, 999))
def test_every_method_returns_exactly_k_rows_at_ascending_positions(shape, r, seed):
    x = tensor(shape, seed)
    n = shape[0] * shape[1] * shape[2]
    k = num_kept(r, n)
    for name in METHODS:
        c = compress(name, x, r)
        assert c.num_tokens == k and c.tokens.shape == (k, shape[3]) and c.merged.shape == (k,), name
        assert c.positions.dtype == torch.int64 and int(c.positions.min()) >= 0 and int(c.positions.max()) < n
        assert k == 1 or bool((c.positions[1:] > c.positions[:-1]).all()), name
        real = ~c.merged
        assert torch.equal(c.tokens[real], x.reshape(-1, shape[3])[c.positions[real]]), name  # kept rows are inputs
        assert c.timings_ms["total"] >= 0 and c.method == name and c.grid == shape[:3]


@pytest.mark.parametrize("name", list(METHODS))
def test_methods_are_deterministic_and_whole_at_retention_one(name):
    x = tensor((5, 6, 7, 12), 3)
    a, b = compress(name, x, 0.3), compress(name, x, 0.3)
    assert torch.equal(a.positions, b.positions) and torch.equal(a.tokens, b.tokens)
    full = compress(name, x, 1.0)
    assert torch.equal(full.positions, torch.arange(5 * 6 * 7)) and coverage(x, full) == pytest.approx(1.0, abs=1e-5)


def test_entropy_select_is_select_tokens_and_its_variants_differ():
    x = tensor((6, 9, 9, 16), 1)
    cfg = SelectorConfig(tau=0.3, rho=0.7)
    c = compress("entropy_select", x, 0.2, config=cfg)
    want = select_tokens(x, 0.2, cfg)
    assert torch.equal(c.positions, want.indices) and torch.equal(c.tokens, want.tokens)
    assert torch.equal(compress("entropy_select_paper", x, 0.2).positions, select_tokens(x, 0.2).indices)
    inv = select_tokens(x, 0.2, SelectorConfig(tau=0.05, invert_entropy=True))
    plain = select_tokens(x, 0.2, SelectorConfig(tau=0.05))
    assert torch.equal(inv.entropy, plain.entropy)  # the map is Ĥ either way; only the score turns it over
    torch.testing.assert_close(inv.score, (0.5 * (1 - plain.entropy) + 0.5 * plain.gradient).clamp(0, 1))
    assert not torch.equal(inv.indices, plain.indices)
    assert torch.equal(compress("entropy_select_inverted", x, 0.2).positions, inv.indices)


def test_random_is_seeded_and_frame_sample_keeps_whole_frames():
    x = tensor((8, 4, 5, 6), 2)
    a, b, c = (compress("random", x, 0.3, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.positions, b.positions) and not torch.equal(a.positions, c.positions)
    f = compress("frame_sample", x, 2.5 / 8)  # two whole frames and half of another
    frames = torch.bincount(f.positions // 20, minlength=8)
    assert sorted(frames.tolist()) == [0] * 5 + [10, 20, 20]
    assert frames[2] == 20 and frames[6] == 20  # the centres of two equal halves of 8 frames: 2 and 6


def test_uniform_pool_of_a_constant_grid_is_the_constant_at_window_centres():
    x = torch.full((3, 6, 8, 5), 2.5)
    c = compress("uniform_pool", x, 12 / (3 * 6 * 8))  # 4 rows a frame: a 2×2 pooling of 6×8
    torch.testing.assert_close(c.tokens, torch.full((12, 5), 2.5))
    assert bool(c.merged.all())
    rc = (c.positions % 48).tolist()[:4]
    assert [divmod(p, 8) for p in rc] == [(1, 2), (1, 6), (4, 2), (4, 6)]  # window centres of 3×4 windows
    y = tensor((2, 4, 4, 3), 0)
    pooled = compress("uniform_pool", y, 2 / 32)  # one row a frame: the frame's mean
    torch.testing.assert_close(pooled.tokens, y.mean(dim=(1, 2)))


def test_dycoke_drops_tokens_equal_to_their_place_in_the_key_frame():
    x = tensor((4, 4, 4, 8), 5)
    x[1] = x[0]
    x[1, 2, 3] = tensor((8,), 9)  # frame 1 differs from frame 0 at (2, 3) only
    x[2] = tensor((4, 4, 8), 12)
    x[3] = x[2]
    x[3, 0, 1] = tensor((8,), 11)
    # the last window's frame 2 stays whole (DyCoke compares it only when a window follows); K = 2 frames + 2
    c = compress("dycoke", x, (2 * 16 + 2) / 64)
    kept = set(c.positions.tolist())
    assert set(range(0, 16)) <= kept and set(range(32, 48)) <= kept  # frames 0 and 2 whole
    assert {16 + 2 * 4 + 3, 48 + 0 * 4 + 1} <= kept  # the changed tokens of frames 1 and 3
    with pytest.raises(SelectorError, match="window must be 4"):
        compress("dycoke", x, 0.5, window=3)


def test_vidcom2_keeps_the_distinctive_token_and_tome_merges_identical_pairs():
    x = tensor((3, 5, 5, 16), 7) * 0.01 + 1.0  # nearly identical tokens
    x[1, 2, 2] = -5.0  # one outlier
    c = compress("vidcom2", x, 0.1)
    assert 25 + 12 in c.positions.tolist()
    y = tensor((1, 2, 4, 6), 1)
    y[0, 0, 1] = y[0, 0, 0]  # tokens 0 (set A) and 1 (set B) identical: merged first
    t = compress("tome", y, 7 / 8)
    assert 0 not in t.positions.tolist() and 1 in t.positions.tolist()
    row = t.tokens[t.positions.tolist().index(1)]
    torch.testing.assert_close(row, y[0, 0, 0])


def test_llava_scissor_and_fastvid_merge_what_is_similar():
    x = torch.zeros(2, 4, 4, 6)
    x[..., 0] = 1.0
    x[:, 2:, :, 1] = 3.0  # two regions per frame, the same in both frames
    s = compress("llava_scissor", x, 2 / 32)
    assert s.num_tokens == 2 and bool(s.merged.all())
    best = torch.nn.functional.normalize(x.reshape(-1, 6), dim=-1) @ torch.nn.functional.normalize(s.tokens, dim=-1).T
    assert float(best.amax(1).min()) > 0.999  # the two rows stand for the two regions
    f = compress("fastvid", x, 4 / 32)
    assert f.num_tokens == 4 and coverage(x, f) > 0.99
    with pytest.raises(SelectorError, match="tau must be in"):
        compress("fastvid", x, 0.5, tau=2.0)


@pytest.mark.parametrize(("knob", "bad", "good"), [("c", 0, 1), ("p", 0, 1), ("knn", 0, 1), ("c", 2.0, 2),
                                                   ("p", True, 2), ("tau", 1.01, 1.0), ("tau", -1.01, -1.0),
                                                   ("tau", "0.5", 0.5), ("alpha", -0.01, 0.0), ("alpha", 1.01, 1.0),
                                                   ("alpha", None, 1)])
def test_fastvid_refuses_knobs_out_of_range_by_name_and_takes_the_bounds(knob, bad, good):
    """FastVID's knobs: an int below 1 (or a bool, or a float) for c, p, knn, τ outside [−1, 1], α outside [0, 1]
    or not numbers are refused with the knob's name and value; the bounds themselves run."""
    x = torch.randn(4, 3, 3, 5, generator=torch.Generator().manual_seed(16))
    with pytest.raises(SelectorError, match=rf"^{knob} must be (an int >= 1|in \[-?[01], 1\]), got {bad!r}$"):
        compress("fastvid", x, 0.5, **{knob: bad})
    assert compress("fastvid", x, 0.5, **{knob: good}).num_tokens == 18


def _evs_reference(x: torch.Tensor, keep: int) -> torch.Tensor:
    """vLLM's EVS mask, written out per token: dissimilarity 1 − cos to the same place in the previous frame, the
    first frame 255, stable descending order, the first `keep` (vllm/multimodal/evs.py compute_retention_mask)."""
    t_, h_, w_, _ = x.shape
    dis = []
    for t in range(t_):
        for i in range(h_):
            for j in range(w_):
                if t == 0:
                    dis.append(255.0)
                else:
                    a, b = x[t, i, j].double(), x[t - 1, i, j].double()
                    dis.append(1.0 - float(a @ b / max(float(a.norm() * b.norm()), 1e-8)))
    order = sorted(range(len(dis)), key=lambda n: -dis[n])  # Python's sort is stable
    mask = torch.zeros(len(dis), dtype=torch.bool)
    mask[order[:keep]] = True
    return mask


@pytest.mark.parametrize("r", [0.17, 0.25, 0.35, 0.5, 0.9])
def test_evs_keeps_what_vllm_keeps_where_k_holds_a_frame(r):
    x = tensor((6, 5, 7, 16), 11)
    x[3] = x[2] + 0.05 * tensor((5, 7, 16), 2)  # a near-static frame: EVS drops it first
    n, m = 6 * 5 * 7, 5 * 7
    k = num_kept(r, n)
    vllm_keep = max(m, int(n * r))  # compute_retained_tokens_count with q = 1 − r
    c = compress("evs", x, r)
    ours = torch.zeros(n, dtype=torch.bool)
    ours[c.positions] = True
    assert k >= m and vllm_keep == k
    assert torch.equal(ours, _evs_reference(x, k))
    assert bool(ours[:m].all())  # the first frame whole
    assert int(ours[3 * m: 4 * m].sum()) <= int(ours[2 * m: 3 * m].sum())  # the static frame keeps the least


def test_evs_below_one_frame_keeps_exactly_k_from_the_first_frame():
    x = tensor((4, 5, 6, 8), 5)
    c = compress("evs", x, 7 / 120)
    assert c.num_tokens == 7 and torch.equal(c.positions, torch.arange(7))


def test_frame_rows_count_each_methods_rows_per_frame():
    """The budgets side by side: EVS keeps the first frame whole, frame sampling keeps whole frames, ENTROPY-SELECT's
    counts are its frame budgets b_t, a merged row counts at its anchor's frame; every method's counts sum to K."""
    from selector.compare import frame_rows, result_row
    from viz import frame_rows_chart

    x = tensor((8, 6, 6, 16), 4)
    k = num_kept(0.3, 8 * 36)
    rows = []
    for name in METHODS:
        c = compress(name, x, 0.3)
        counts = frame_rows(c)
        expect = torch.bincount(c.positions // 36, minlength=8).tolist()
        assert counts == expect and sum(counts) == k and len(counts) == 8, name
        rows.append(result_row(x, c))
    assert frame_rows(compress("evs", x, 0.3))[0] == 36
    assert sorted(set(frame_rows(compress("frame_sample", x, 0.3)))) <= [0, 36] or \
        sum(v not in (0, 36) for v in frame_rows(compress("frame_sample", x, 0.3))) == 1  # whole frames and a rest
    sel = select_tokens(x, 0.3, SelectorConfig())
    assert frame_rows(compress("entropy_select", x, 0.3)) == sel.budgets.tolist()
    fig = frame_rows_chart(rows)
    assert [t.name for t in fig.data] == list(METHODS) and list(fig.data[0].y) == rows[0]["frame_rows"]


def test_bad_inputs_are_named():
    x = tensor((2, 3, 3, 4), 0)
    for args, kw, msg in ((("nope", x, 0.5), {}, "unknown method 'nope'"), (("random", x, 0), {}, "retention"),
                          (("random", x, 0.5), {"seed": "a"}, "seed must be an int"),
                          (("random", x, 0.5), {"colour": 1, "size": 2},
                           r"^random takes no option colour, size \(its options: seed\)$"),
                          (("tome", x, 0.5), {"seed": 1}, "^tome takes no option seed$"),
                          (("tome", x[..., 0], 0.5), {}, r"\(T, H, W, D\) tensor, got \(2, 3, 3\)$"),
                          (("tome", x.tolist(), 0.5), {}, r"\(T, H, W, D\) tensor, got list$"),
                          (("tome", x[:0], 0.5), {}, r"non-empty \(T, H, W, D\) tensor, got \(0, 3, 3, 4\)$"),
                          (("tome", x.long(), 0.5), {}, "float tensor, got torch.int64"),
                          ((7, x, 0.5), {}, "unknown method 7; the methods are " + ", ".join(METHODS) + "$"),
                          (("random", x, True), {}, r"retention must be in \(0, 1\], got True$"),
                          (("random", x, "0.5"), {}, r"retention must be in \(0, 1\], got '0.5'$"),
                          (("random", x, 1.5), {}, r"got 1.5$"),
                          (("tome", x * float("nan"), 0.5), {}, "NaN")):
        with pytest.raises(SelectorError, match=msg):
            compress(*args, **kw)


def test_coverage_against_a_naive_loop():
    x = tensor((3, 3, 4, 5), 4)
    c = compress("random", x, 0.25, seed=3)
    flat = x.reshape(-1, 5)
    want = sum(max(float(torch.nn.functional.cosine_similarity(t, r, dim=0)) for r in c.tokens) for t in flat)
    assert coverage(x, c) == pytest.approx(want / flat.shape[0], abs=1e-5)
    rep = coverage_report(x, c, grid=2)
    frames = {int(p) // 12 for p in c.positions}
    assert rep["frames_covered"] == pytest.approx(len(frames) / 3)
    cells = [{(int(p) % 12 // 4 * 2 // 3) * 2 + (int(p) % 4 * 2 // 4) for p in c.positions if int(p) // 12 == f}
             for f in range(3)]
    assert rep["cells_covered"] == pytest.approx(sum(len(s) for s in cells) / 12)
    assert len(rep["coverage_per_frame"]) == 3


def test_cli_writes_one_row_per_method_and_retention(tmp_path):
    out = tmp_path / "r.csv"
    r = subprocess.run([sys.executable, "-m", "selector.compare", str(SAMPLE), "--encoder", "efficientnet-lite0",
                        "--frames", "4", "--methods", "entropy_select,random,tome", "--retention", "0.1", "0.35",
                        "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert [(row["method"], row["retention"]) for row in rows] == [
        (m, rr) for rr in ("0.1", "0.35") for m in ("entropy_select", "random", "tome")]
    assert all(int(row["tokens_kept"]) == num_kept(float(row["retention"]), 576) for row in rows)
    for row in rows:  # the rows kept in each of the 4 frames, space-separated, summing to K
        per_frame = [int(v) for v in row["frame_rows"].split()]
        assert len(per_frame) == 4 and sum(per_frame) == int(row["tokens_kept"])
    assert "[" in r.stderr and "%]" in r.stderr  # progress on stderr
    js = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "selector.compare", str(SAMPLE), "--encoder", "efficientnet-lite0",
                        "--frames", "4", "--methods", "uniform_pool", "--retention", "0.2", "--out", str(js)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and json.loads(js.read_text())[0]["tokens_kept"] == num_kept(0.2, 576)
    assert sum(json.loads(js.read_text())[0]["frame_rows"]) == num_kept(0.2, 576)
    bad = subprocess.run([sys.executable, "-m", "selector.compare", str(SAMPLE), "--methods", "nope"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "unknown method(s) nope" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(("features", "screen"), [("dinov2-s", False), ("efficientnet-lite0", True),
                                                  ("random", True), ("random", False)],
                         ids=["dinov2-s-fp32", "efficientnet-lite0-split", "random-split", "random-fp32"])
def test_fast_llava_scissor_gives_the_rows_of_the_faithful_search(features, screen, monkeypatch):
    """The fast search (the spatial step from one forest, the temporal step skipped where the spatial one already
    leaves fewer than K components, the token pairs above the lowest reachable τ found once, each pair once,
    products screened in fp16 as on a GPU or not) gives the rows of the τ-search that recomputes every edge in fp32,
    on real features of the bundled clip and on random ones (nearly every token its own component) at several
    retentions, with no warning on a CPU."""
    import naive

    from selector.compare import scissor
    from selector.features import extract
    from selector.video import example_video

    if features == "random":
        x = torch.randn(6, 27, 27, 128, generator=torch.Generator().manual_seed(3))
    else:
        x = extract(example_video(), features, 8).tokens
    monkeypatch.setattr(scissor, "_screen", lambda _x: screen)
    for r in (0.05, 0.35, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no kernel is tried (and fails) on a CPU without the interpreter
            fast = compress("llava_scissor", x, r)
        with monkeypatch.context() as m:
            m.setattr(scissor, "_scissor_pass", naive.scissor_pass)
            slow = compress("llava_scissor", x, r)
        assert torch.equal(fast.positions, slow.positions) and torch.equal(fast.tokens, slow.tokens), (features, r)


def test_scissor_spatial_step_from_one_forest_gives_the_components_counts_and_refusals_of_every_edge():
    """The spatial step at any τ, cut from one maximum spanning forest per frame, gives the components (numbered by
    their first token), counts and refusals (too many edges) of the graph of every edge above τ, with the frames'
    similarities kept or recomputed a few frames at a time (one frame, two, all per product), frames with tied
    similarities (repeated tokens) included."""
    import naive

    from selector.compare import scissor

    g = torch.Generator().manual_seed(8)
    xs = torch.nn.functional.normalize(torch.randn(7, 25, 16, generator=g), dim=-1)
    xs[2, 5:9] = xs[2, 3]  # a clique of one token
    xs[4, ::3] = xs[4, 1]
    sims = torch.bmm(xs, xs.transpose(1, 2))
    seen = set()
    for tau in (-0.2, 0.1, 0.3, 0.5, 0.99, 1.0):
        # ... and a limit that the first frame's edges alone reach exactly, passed by the later frames'
        for max_edges in (10**6, int((sims > tau).sum()), int((sims > tau).sum()) - 1, int((sims[0] > tau).sum())):
            want = naive.spatial_step(xs, tau, max_edges)
            seen.add("refused" if want is None else "counted")
            for kept, chunk in ((64 << 20, 2048), (0, 25), (0, 60), (0, 2048)):
                sp = scissor._Spatial(xs, max_edges, kept=kept, chunk=chunk)
                assert (sp.sims is None) == (kept == 0)
                got = sp(tau)
                assert (got is None) == (want is None) and sp.count(tau) == (None if want is None else want[1])
                n = naive.spatial_step(xs, tau, 10**9)[1]  # the count without the refusal
                assert sp.count(tau, n + 1) == n and sp.count(tau, n) == (None if want is None else n)
                if want is not None:
                    assert torch.equal(got.inv, want[0]) and got.count == want[1], (tau, kept, chunk)
                    # each component's first token, in order, and every other token once
                    firsts = [int(torch.nonzero(want[0] == c)[0]) for c in range(want[1])]
                    assert got.firsts.tolist() == firsts
                    assert torch.nonzero(got.lead).flatten().tolist() == firsts
    assert seen == {"refused", "counted"}


def test_scissor_forest_is_a_maximum_spanning_tree_of_each_frame():
    """Each frame's tree spans the frame from its first token (every token reaches it), and no similarity outside
    the tree beats the lightest tree edge on the path it closes (the cut property): a maximum spanning tree."""
    from selector.compare import scissor

    xs = torch.nn.functional.normalize(torch.randn(3, 30, 8, generator=torch.Generator().manual_seed(4)), dim=-1)
    sims = torch.bmm(xs, xs.transpose(1, 2))
    parent, weight = scissor._forest(xs, sims)
    total = 0.0
    for f in range(3):
        p = parent[f * 30:(f + 1) * 30] - f * 30
        w = weight[f * 30:(f + 1) * 30]
        assert p[0] == 0 and w[0] == -torch.inf and bool((w[1:] > -2).all())
        for t in range(30):
            u, hops = t, 0
            while u != 0:
                assert sims[f, u, p[u]] == w[u]
                u, hops = int(p[u]), hops + 1
                assert hops < 30
        total += float(w[1:].sum())
        # Prim's in plain Python over the same similarities: the same total weight
        inside, best = {0}, 0.0
        while len(inside) < 30:
            v, s = max(((j, float(sims[f, i, j])) for i in inside for j in range(30) if j not in inside),
                       key=lambda e: e[1])
            inside.add(v)
            best += s
        total -= best
    assert abs(total) < 1e-4


def test_scissor_pairs_at_exactly_tau_are_not_above_it(monkeypatch):
    """A cosine exactly τ (here 0.5 and 0.25, exact in fp32 and fp16) is not above τ: not a pair, not an edge of the
    spatial step, screened or not, while one a little above is."""
    from selector.compare import scissor

    x = torch.zeros(4, 8)
    x[0, 0] = 1.0
    x[1, 0], x[1, 1] = 0.5, 0.75 ** 0.5  # x0·x1 = 0.5 exactly
    x[2, 0], x[2, 2] = 0.25, 0.9375 ** 0.5  # x0·x2 = 0.25 exactly
    x[3, 0], x[3, 3] = 0.5 + 2 ** -10, (1 - (0.5 + 2 ** -10) ** 2) ** 0.5
    for screen in (True, False):
        monkeypatch.setattr(scissor, "_screen", lambda _x, s=screen: s)
        for tau, want in ((0.5, {(0, 3)}), (0.25, {(0, 1), (0, 3), (1, 3)})):
            src, dst, _, _ = scissor._pairs_above(x, x, tau, 100, upper_from=0)
            got = _pair_set(src, dst)
            assert got & {(0, 1), (0, 2), (0, 3)} == want & {(0, 1), (0, 2), (0, 3)}, (screen, tau, got)
    sp = scissor._Spatial(x[None])
    assert sp(0.5).count == 3 and sp(0.5 + 2 ** -9).count == 4  # 0 and 3 joined above 0.5, not above 0.502


def _pair_set(a: torch.Tensor, b: torch.Tensor) -> set:
    return set(zip(a.tolist(), b.tolist(), strict=True))


def test_token_pairs_are_every_pair_above_the_floor_once(monkeypatch):
    """The pairs found once per clip, screened in fp16 (as on a GPU) or not at all, are exactly the pairs i < j
    whose fp32 cosine exceeds the floor, with that cosine (or, not recomputed, one more than floor + margin), and
    give the pairs above any higher τ; the nearest row of a screened product is fp32's."""
    from selector.compare import scissor

    g = torch.Generator().manual_seed(5)
    base = torch.randn(40, 64, generator=g)
    x = torch.nn.functional.normalize(base.repeat(5, 1) + 0.3 * torch.randn(200, 64, generator=g), dim=-1)
    sims = x @ x.T
    i, j = torch.nonzero(torch.triu(sims > 0.6, 1), as_tuple=True)
    want = _pair_set(i, j)
    assert 100 < len(want) < 19_900
    for screen in (True, False):
        monkeypatch.setattr(scissor, "_screen", lambda _x, s=screen: s)
        src, dst, val, exact = scissor._pairs_above(x, x, 0.6, 10**6, upper_from=0, chunk=64)
        assert _pair_set(src, dst) == want
        margin = scissor._margin(64) if screen else 0.0
        assert margin == (1e-3 + 64 * 6e-8 if screen else 0.0)
        assert torch.allclose(val[exact], sims[src, dst][exact], atol=1e-6)
        assert bool((val[~exact] > 0.6 + margin).all()) and torch.allclose(val, sims[src, dst], atol=margin)
        assert bool(exact.all()) or screen
        pairs = scissor._TokenPairs(x[None], 0.6)
        for tau in (0.6, 0.62, 0.7, 0.8):  # the pairs found once, at a higher tau
            s3, d3 = pairs.above(tau)
            assert _pair_set(s3, d3) == {p for p in want if sims[p] > tau}, (screen, tau)
        assert scissor._pairs_above(x, x, 0.6, len(want) - 1, upper_from=0, chunk=64) is None
        assert len(scissor._pairs_above(x, x, 0.6, len(want), upper_from=0, chunk=64)[0]) == len(want)  # at the limit
        s2, d2, _, _ = scissor._pairs_above(x[:50], x, 0.6, 10**6, chunk=16)  # rows against all, self included
        assert _pair_set(s2, d2) == _pair_set(*torch.nonzero(sims[:50] > 0.6, as_tuple=True))
        c = x[::7].clone()
        c[3] = c[2]  # a tie: the first wins
        assert torch.equal(scissor._nearest(x, c, chunk=64), (x @ c.T).argmax(1)), screen
        # pairs of rows ~1e-5 apart in cosine to each row of x: both within the margin of the best, in every block
        twins = torch.nn.functional.normalize(c + 3e-4 * torch.randn(c.shape, generator=g), dim=-1)
        c2 = torch.cat([c, twins])
        fp32 = torch.stack([(x * c2[j]).sum(-1) for j in range(len(c2))], 1).argmax(1)
        assert torch.equal(scissor._nearest(x, c2, chunk=64), fp32), screen


_INTERPRETED_SCISSOR = """
import sys
import torch
sys.path.insert(0, "tests")
import naive
from selector.compare import compress, scissor

assert not scissor._fused(torch.zeros(2, 2))  # a CPU tensor is screened in fp32, by torch
scissor._screen = lambda _x: True  # as on a GPU: fp16, here by the kernels in Triton's interpreter
assert scissor._fused(torch.zeros(2, 2))
launches = []
_pf = scissor._pairs_fused
scissor._pairs_fused = lambda *a, **k: launches.append("pairs") or _pf(*a, **k)
pair_set = lambda a, b: set(zip(a.tolist(), b.tolist()))
g = torch.Generator().manual_seed(5)
base = torch.randn(40, 64, generator=g)
x = torch.nn.functional.normalize(base.repeat(5, 1) + 0.3 * torch.randn(200, 64, generator=g), dim=-1)
x[7] = x[3]  # a pair at cosine 1 and equal products
sims = x @ x.T
for tau in (0.6, 0.1):
    want = pair_set(*torch.nonzero(torch.triu(sims > tau, 1), as_tuple=True))
    src, dst, val, exact = scissor._pairs_above(x, x, tau, 10**6, upper_from=0)
    assert pair_set(src, dst) == want and len(want) > 100, tau
    assert torch.equal(src * 200 + dst, torch.sort(src * 200 + dst).values)  # in (i, j) order
    assert torch.allclose(val[exact], sims[src, dst][exact], atol=1e-6)
    margin = scissor._margin(64)
    assert bool((val[~exact] > tau + margin).all()) and torch.allclose(val, sims[src, dst], atol=margin)
    s2, d2, _, _ = scissor._pairs_above(x[:50], x, tau, 10**6)  # rows against all, self included
    assert pair_set(s2, d2) == pair_set(*torch.nonzero(sims[:50] > tau, as_tuple=True)), tau
    s3, d3, _, _ = scissor._pairs_above(x[130:], x, tau, 10**6, upper_from=130)
    assert pair_set(s3 + 130, d3) == {p for p in want if p[0] >= 130}, tau
    assert scissor._pairs_above(x, x, tau, len(want) - 1, upper_from=0) is None, tau
assert len(want) > 1024 and scissor._pairs_fused(x, x, 0.1, 0, upper_from=0) is False  # candidates past the buffer
assert scissor._pairs_above(x, x, 0.1, 0, upper_from=0) is None  # ... and the blocks decide
feats = torch.randn(4, 12, 12, 64, generator=torch.Generator().manual_seed(3))
for r in (0.05, 0.35, 0.5):
    fast = compress("llava_scissor", feats, r)
    fused, pass_ = launches.count("pairs"), scissor._scissor_pass
    scissor._scissor_pass = naive.scissor_pass
    slow = compress("llava_scissor", feats, r)
    scissor._scissor_pass = pass_
    assert torch.equal(fast.positions, slow.positions) and torch.equal(fast.tokens, slow.tokens), r
# the forest kernel: trees whose cuts give every τ's components, as the torch trees do (ties included)
xs = torch.nn.functional.normalize(torch.randn(5, 40, 16, generator=g), dim=-1)
xs[1, 10:20] = xs[1, 3]
xs[3, ::2] = xs[3, 1]
sims = torch.bmm(xs, xs.transpose(1, 2))
parent, weight = scissor._forest_fused(sims)
p2, w2 = scissor._prim(sims)
assert torch.equal(torch.sort(weight).values, torch.sort(w2.flatten()).values)  # one maximum tree weight set
sp = scissor._Spatial(xs)
assert torch.equal(sp.parent, parent) and torch.equal(sp.weight, weight)
for tau in (-0.5, 0.0, 0.2, 0.5, 0.9, 1.0):
    got, want = sp(tau), naive.spatial_step(xs, tau)
    assert torch.equal(got[0], want[0]) and got[1] == want[1] == sp.count(tau), tau
# the fp32 products of given pairs and the nearest rows (repeated columns: ties, the first wins)
r, c = torch.randint(0, 200, (2, 300), generator=g)
assert torch.allclose(scissor._dots(x, x, r, c), (x[r] * x[c]).sum(-1), atol=1e-6)
assert scissor._dots(x, x, r[:0], c[:0]).shape == (0,)
cols = torch.cat([x[::9], x[::9][:3]])
assert torch.equal(scissor._nearest(x, cols), (x @ cols.T).argmax(1))
assert scissor._KERNELS["failed"] is None
print(launches.count("pairs"))
"""


def test_llava_scissor_kernel_that_fails_gives_way_to_the_torch_path_with_one_warning(monkeypatch):
    """A kernel that cannot be built or run (here: raising) leaves the pairs to the torch blocks, with one
    RuntimeWarning naming the error; it is not tried again in the process."""
    from conftest import require_triton

    from selector.compare import scissor

    require_triton()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(scissor, "_screen", lambda _x: True)
    monkeypatch.setitem(scissor._KERNELS, "failed", None)
    tried = []

    def broken(*_a, **_k):
        tried.append(1)
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(scissor, "_pairs_fused", broken)
    x = torch.nn.functional.normalize(torch.randn(60, 16, generator=torch.Generator().manual_seed(6)), dim=-1)
    assert scissor._fused(x)
    with pytest.warns(RuntimeWarning, match="Triton kernel failed here.*no kernel image") as caught:
        src, dst, _, _ = scissor._pairs_above(x, x, 0.3, 10**6, upper_from=0)
        again = scissor._pairs_above(x[:30], x, 0.3, 10**6)
    assert len(caught) == 1 and tried == [1] and not scissor._fused(x)
    assert _pair_set(src, dst) == _pair_set(*torch.nonzero(torch.triu(x @ x.T > 0.3, 1), as_tuple=True))
    assert _pair_set(again[0], again[1]) == _pair_set(*torch.nonzero(x[:30] @ x.T > 0.3, as_tuple=True))


def test_llava_scissor_forest_and_dots_kernels_that_fail_give_way_to_torch(monkeypatch):
    """The frames' trees and the fp32 products of pairs, where their kernel fails, come from torch with one warning
    each time a kernel first fails: the same components and products."""
    import naive
    from conftest import require_triton

    from selector.compare import scissor

    require_triton()
    from selector.compare import scissor_kernels

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(scissor, "_screen", lambda _x: True)
    monkeypatch.setitem(scissor._KERNELS, "failed", None)

    def broken(*_a, **_k):
        raise RuntimeError("out of resources: shared memory")

    monkeypatch.setattr(scissor, "_forest_fused", broken)
    xs = torch.nn.functional.normalize(torch.randn(3, 20, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    with pytest.warns(RuntimeWarning, match="Triton kernel failed here.*shared memory"):
        sp = scissor._Spatial(xs)
    for tau in (0.0, 0.3, 0.6):
        got, want = sp(tau), naive.spatial_step(xs, tau)
        assert torch.equal(got.inv, want[0]) and got.count == want[1], tau
    monkeypatch.setitem(scissor._KERNELS, "failed", None)

    class Unlaunchable:
        def __getitem__(self, _grid):
            return broken

    monkeypatch.setattr(scissor_kernels, "dots_kernel", Unlaunchable())
    x = xs.reshape(60, 8)
    r, c = torch.arange(60), torch.arange(60).flip(0)
    with pytest.warns(RuntimeWarning, match="Triton kernel failed here.*shared memory"):
        got = scissor._dots(x, x, r, c)
    assert torch.allclose(got, (x * x.flip(0)).sum(-1), atol=1e-6) and not scissor._fused(x)


def test_llava_scissor_kernel_in_triton_interpreter_keeps_fp32s_pairs_and_rows():
    """LLaVA-Scissor's Triton kernels (fp16 pairs above τ − margin, the frames' trees, fp32 products), run by
    Triton's interpreter on the CPU: every pair i < j with fp32 cosine above τ once, in (i, j) order, with fp32's
    cosine or one above τ + margin; rows against other rows; the limit (also past the candidates' buffer); the whole
    method's rows and places those of the τ-search recomputing every edge in fp32, with the kernel launched; the
    trees' components at every τ; the products of given pairs; the nearest rows."""
    import os

    from conftest import require_triton

    require_triton()
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", _INTERPRETED_SCISSOR], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.split()[-1]) >= 10, r.stdout


def _all_segmentations(t_: int):
    """Every way to cut frames 0..t_-1 into consecutive windows."""
    if t_ == 0:
        yield []
        return
    for first in range(1, t_ + 1):
        for rest in _all_segmentations(t_ - first):
            yield [(0, first - 1)] + [(s + first, e + first) for s, e in rest]


def _saved(windows, above):
    return sum(int(above[s:e].all(0).sum()) * (e - s) for s, e in windows if e > s)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_llava_scissor_on_a_gpu_screens_in_fp16_and_keeps_fp32s_pairs_and_rows(monkeypatch):
    """On a GPU the pairs and nearest rows, screened in fp16, are fp32's; the kernels' fp32 products are torch's to
    fp32 rounding; the whole method keeps the places that the torch blocks, the τ-search recomputing every edge in
    fp32 and the CPU keep; rows equal the reference's to fp32 rounding (CUDA's index_add sums in no fixed order; a
    token nearly as close to two components may join either on another device)."""
    import naive

    from selector.compare import scissor

    g = torch.Generator().manual_seed(5)
    base = torch.randn(40, 64, generator=g)
    x = torch.nn.functional.normalize(base.repeat(5, 1) + 0.3 * torch.randn(200, 64, generator=g), dim=-1)
    sims = x @ x.T
    xc = x.cuda()
    src, dst, val, exact = scissor._pairs_above(xc, xc, 0.6, 10**6, upper_from=0, chunk=64)
    assert _pair_set(src.cpu(), dst.cpu()) == _pair_set(*torch.nonzero(torch.triu(sims > 0.6, 1), as_tuple=True))
    assert torch.allclose(val.cpu(), sims[src.cpu(), dst.cpu()], atol=scissor._margin(64))
    c = x[::7].clone()
    c[3] = c[2]
    assert torch.equal(scissor._nearest(xc, c.cuda(), chunk=64).cpu(), (x @ c.T).argmax(1))
    y = torch.nn.functional.normalize(torch.randn(300, 64, generator=g), dim=-1)
    y[250] = y[60] = y[40]  # ties within a tile of columns and across tiles
    assert torch.equal(scissor._nearest(y.cuda(), y.cuda()).cpu(),
                       torch.where((torch.arange(300) == 250) | (torch.arange(300) == 60), 40, torch.arange(300)))
    r_, c_ = torch.randint(0, 200, (2, 5000), generator=g)
    assert scissor._fused(xc)
    dots = scissor._dots(xc, xc, r_.cuda(), c_.cuda()).cpu()
    assert torch.allclose(dots, (x[r_] * x[c_]).sum(-1), atol=1e-6) and not torch.equal(r_, c_)
    frames = xc.reshape(8, 25, 64)
    sims = torch.bmm(frames, frames.mT)
    _, weight = scissor._forest(frames, sims)  # the forest kernel: the weights of every maximum spanning tree
    assert torch.equal(torch.sort(weight).values, torch.sort(scissor._prim(sims)[1].flatten()).values)
    feats = torch.randn(8, 27, 27, 384, generator=torch.Generator().manual_seed(1))
    for r in (0.1, 0.35):
        gpu = compress("llava_scissor", feats.cuda(), r)
        with monkeypatch.context() as m:
            m.setattr(scissor, "_pairs_fused", lambda *_a, **_k: False)  # the torch blocks instead of the kernel
            blocks = compress("llava_scissor", feats.cuda(), r)
        assert torch.equal(gpu.positions, blocks.positions), r
        assert torch.allclose(gpu.tokens, blocks.tokens, atol=1e-5), r
        with monkeypatch.context() as m:
            m.setattr(scissor, "_scissor_pass", naive.scissor_pass)
            ref = compress("llava_scissor", feats.cuda(), r)
        cpu = compress("llava_scissor", feats, r)
        assert torch.equal(gpu.positions, ref.positions) and torch.equal(gpu.positions.cpu(), cpu.positions), r
        assert torch.allclose(gpu.tokens, ref.tokens, atol=1e-5), r


def test_holitom_merges_groups_of_one_size_at_once_as_one_by_one():
    """The batched density merge of several groups of one size gives each group's rows, centres and flags as the
    per-group path does."""
    from selector.compare.holitom import _centres, _merge, _merge_batch

    g = torch.Generator().manual_seed(2)
    feats = torch.randn(5, 30, 16, generator=g)
    feats[2, 10:] = feats[2, 0]  # duplicates: ties of density and of distance
    q = torch.tensor([7, 9, 8, 7, 12])
    rows, is_centre, has = _merge_batch(feats, q, 7, 0.6)
    want_rows, want_has = [], []
    for f, n in zip(feats, q.tolist(), strict=True):
        centres, dist = _centres(f, n, 7)
        r, h = _merge(f, centres, dist, 0.6)
        assert torch.equal(torch.nonzero(is_centre[len(want_rows)]).flatten(), centres)
        want_rows.append(r)
        want_has.append(h)
    assert torch.allclose(rows, torch.cat(want_rows), atol=1e-6) and torch.equal(has, torch.cat(want_has))


@settings(max_examples=60, deadline=None)
@given(t_=st.integers(1, 7), m=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_holitom_segmentation_saves_the_most_rows_of_any_segmentation(t_, m, seed):
    """HoliTom's dynamic programme against every segmentation of a short clip: it saves the most rows, and among
    segmentations that save as many it takes windows as the public code's strict comparison does."""
    from selector.compare.holitom import static_windows

    g = torch.Generator().manual_seed(seed)
    sim = torch.rand(max(t_ - 1, 0), m, generator=g)
    above = sim > 0.5
    got = static_windows(sim, 0.5) if t_ > 1 else [(0, 0)]
    assert [w for s, e in got for w in range(s, e + 1)] == list(range(t_))  # a cut of every frame, in order
    best = max(_saved(w, above) for w in _all_segmentations(t_))
    assert _saved(got, above) == best


def test_holitom_merges_static_places_then_clusters_by_density():
    from selector.compare.holitom import holitom

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, 6, 16, generator=g)
    x[:, :3] = x[0, :3]  # the top half never changes: static in one window of all 4 frames
    rows, pos, merged = holitom(x, 30)
    assert rows.shape == (30, 16) and torch.equal(pos, torch.sort(pos).values) and len(set(pos.tolist())) == 30
    flat = x.reshape(-1, 16)
    assert torch.equal(rows[~merged], flat[pos[~merged]])  # an unmerged row is the input's own token
    t, place = pos // 36, pos % 36
    static = place < 18
    assert bool((t[static] == 0).all())  # a static row sits at its place in the window's first frame
    # 18 static rows + 4 × 18 dynamic tokens = 90 groups' members; 30 rows shared in proportion: 6 static, 24 dynamic
    assert int(static.sum()) == 6 and [int((t[~static] == f).sum()) for f in range(4)] == [6, 6, 6, 6]
    assert bool(merged[static].all()) and bool(torch.isfinite(rows).all())  # static rows are means of 4 frames
    # K above the rows left after the static merge (90 < 120): no static merge, every frame its own group
    rows, pos, merged = holitom(x, 120)
    assert rows.shape[0] == 120 and [int((pos // 36 == f).sum()) for f in range(4)] == [30, 30, 30, 30]


def test_holitom_centre_rows_follow_the_beta_rule():
    from selector.compare.holitom import _centres, _merge

    g = torch.Generator().manual_seed(1)
    feats = torch.randn(12, 8, generator=g)
    centres, dist = _centres(feats, 3, 7)
    rows, has = _merge(feats, centres, dist, 0.6)
    owner = dist[:, centres].argmin(1)
    for j, c in enumerate(centres.tolist()):
        members = [i for i in range(12) if owner[i] == j and i not in centres.tolist()]
        want = feats[c] if not members else 0.6 * feats[c] + 0.4 * feats[members].mean(0)
        assert torch.allclose(rows[j], want, atol=1e-6) and bool(has[j]) == bool(members)


def test_scissor_pass_with_k_settles_the_count_against_k_by_bounds_or_exactly():
    """With k, a pass may answer with a bound on the count instead of the count: always on the count's side of k,
    and the components it defers are the full pass's; the bounds settle some passes (both sides) without labels."""
    import naive
    import torch.nn.functional as F

    from selector.compare import scissor

    x = torch.randn(4, 6, 6, 32, generator=torch.Generator().manual_seed(7))
    frames = x.reshape(4, 36, 32)
    xs = F.normalize(frames, dim=-1)
    kinds = set()
    for tau in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7):
        full = scissor._scissor_pass(xs, frames, tau)
        spatial = naive.spatial_step(xs, tau)[1]
        for k in (1, 20, 40, 60, 80, 100, 144):
            out = scissor._scissor_pass(xs, frames, tau, k=k)
            assert (out[1] >= k) == (full[1] >= k), (tau, k)
            if callable(out[0]):  # at least n − E: the components when asked for
                comp, n = out[0]()
                assert n == full[1] and torch.equal(comp, full[0]) and out[1] <= n, (tau, k)
                kinds.add("at least")
            elif out[0] is None:
                assert out[1] >= full[1], (tau, k)
                kinds.add("spatial" if out[1] == spatial < k else "at most")
            else:
                assert out[1] == full[1] and torch.equal(out[0], full[0])
                kinds.add("counted")
    assert kinds == {"at least", "at most", "spatial", "counted"}


@pytest.mark.parametrize("name", ["vidcom2", "dycoke"])
def test_vidcom2_and_dycoke_keep_the_places_of_a_token_by_token_reference(name):
    """VidCom2's and DyCoke's kept places equal those of a float64 reference written one token and one channel at a
    time (tests/naive.py) over clip lengths that cover DyCoke's last-window rule and K below, at and above VidCom2's
    one-per-frame and DyCoke's whole frames."""
    import naive

    ref = {"vidcom2": naive.vidcom2, "dycoke": naive.dycoke}[name]
    g = torch.Generator().manual_seed(11)
    for t_, r in ((1, 0.5), (3, 0.1), (5, 0.05), (6, 0.3), (7, 0.45), (9, 0.2), (10, 0.6), (12, 0.9)):
        x = torch.randn(t_, 3, 4, 10, generator=g) * (1 + torch.arange(10) / 4)  # channels of distinct variance
        got = compress(name, x, r)
        want = ref(x, len(got.positions))
        assert got.positions.tolist() == want, (name, t_, r)


def test_uniform_pool_rows_places_and_flags_follow_a_window_by_window_reference():
    """uniform_pool's rows (to fp32 rounding), places and merged flags equal a float64 reference that averages each
    adaptive-pooling window by hand, on grids whose windows overlap, have one token, or cover the frame."""
    import naive

    from selector.compare.methods import _uniform_pool

    g = torch.Generator().manual_seed(12)
    for shape, k in (((3, 5, 7, 4), 10), ((2, 4, 4, 3), 32), ((4, 6, 3, 2), 5), ((5, 9, 9, 3), 23), ((1, 3, 8, 2), 1)):
        x = torch.randn(*shape, generator=g)
        rows, pos, merged = _uniform_pool(x, k)
        want_rows, want_pos, want_merged = naive.uniform_pool(x, k)
        assert pos.tolist() == want_pos and merged.tolist() == want_merged, (shape, k)
        assert torch.allclose(rows.double(), torch.tensor(want_rows, dtype=torch.float64), atol=1e-6), (shape, k)


def test_tome_rows_places_and_flags_follow_a_token_by_token_reference():
    """ToMe's rows (to fp32 rounding), places and merged flags equal a float64 reference that matches and merges one
    token at a time, over one and several rounds (K above and below half the tokens) and odd token counts."""
    import naive

    from selector.compare.methods import _tome

    g = torch.Generator().manual_seed(13)
    for shape, k in (((2, 3, 3, 6), 12), ((3, 3, 3, 5), 7), ((1, 4, 5, 4), 3), ((4, 2, 3, 8), 23), ((2, 3, 5, 4), 1)):
        x = torch.randn(*shape, generator=g)
        rows, pos, merged = _tome(x, k)
        want_rows, want_pos, want_merged = naive.tome(x, k)
        assert pos.tolist() == want_pos and merged.tolist() == want_merged, (shape, k)
        assert torch.allclose(rows.double(), torch.tensor(want_rows, dtype=torch.float64), atol=1e-5), (shape, k)


def _by_place(rows: torch.Tensor, pos: torch.Tensor, merged: torch.Tensor) -> tuple:
    order = torch.argsort(pos)
    return rows[order].double(), pos[order].tolist(), merged[order].tolist()


def test_fastvid_rows_places_and_flags_follow_a_token_by_token_reference():
    """FastVID's rows (to fp32 rounding), anchor places and merged flags equal a float64 reference that segments,
    scores, assigns and merges one frame and token at a time, over segmentations by the c − 1 cuts, by τ and both,
    anchor frames every p-th or all of them (a share above the anchors' tokens), one frame and K of one row."""
    import naive

    from selector.compare.methods import _fastvid

    g = torch.Generator().manual_seed(14)
    scene = torch.randn(3, 1, 1, 6, generator=g)
    cases = (((7, 3, 3, 6), 20, {}), ((7, 3, 3, 6), 9, {"c": 3, "p": 2}), ((8, 3, 2, 6), 30, {"c": 2, "tau": 0.97}),
             ((6, 3, 3, 6), 40, {"c": 1, "p": 3, "knn": 2}), ((5, 2, 3, 6), 11, {"c": 1, "tau": -1.0, "alpha": 0.2}),
             ((1, 3, 4, 6), 5, {}), ((6, 2, 2, 6), 1, {"c": 2}), ((8, 3, 2, 6), 10, {"c": 3, "tau": -1.0}),
             ((5, 2, 3, 6), 12, {"c": 1, "tau": -1.0}))  # the last: a share exactly the anchor frames' tokens
    for shape, k, knobs in cases:
        t_ = shape[0]
        which = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])[:t_]  # scenes: frames alike within one, unlike across
        x = scene[which].expand(*shape).clone() + 0.6 * torch.randn(*shape, generator=g)
        rows, pos, merged = _by_place(*_fastvid(x, k, **knobs))
        want_rows, want_pos, want_merged = naive.fastvid(x, k, **knobs)
        assert len(pos) == k and pos == want_pos and merged == want_merged, (shape, k, knobs)
        assert torch.allclose(rows, torch.tensor(want_rows, dtype=torch.float64), atol=1e-5), (shape, k, knobs)


def test_holitom_rows_places_and_flags_follow_a_reference_that_tries_every_segmentation():
    """HoliTom's rows (to fp32 rounding), places and merged flags equal a float64 reference that picks the static
    windows among every segmentation of the frames and merges one group and token at a time, on clips with static
    places in windows of several lengths, none at all, and so many static places that the merge is not applied."""
    import naive

    from selector.compare.holitom import holitom, static_windows

    g = torch.Generator().manual_seed(15)
    for shape, k, still, knobs in (((6, 3, 3, 5), 12, 0.1, {}), ((7, 2, 3, 5), 9, 0.15, {"knn": 2}),
                                   ((5, 3, 3, 5), 20, 0.05, {"beta": 0.3, "tau": 0.9}), ((4, 2, 2, 5), 6, 2.0, {}),
                                   ((5, 2, 2, 5), 18, 0.02, {}), ((1, 3, 3, 5), 4, 0.1, {})):
        t_, h_, w_, d_ = shape
        base = torch.randn(1, h_, w_, d_, generator=g)
        noise = torch.randn(*shape, generator=g) * still  # small: the place stays alike from frame to frame
        moving = torch.rand(t_, h_, w_, 1, generator=g) < 0.35  # these tokens change completely
        x = torch.where(moving, torch.randn(*shape, generator=g), base + noise)
        ks = [k]
        if t_ > 1:  # K exactly the rows the static merge leaves (it applies), and one more (it does not)
            unit = torch.nn.functional.normalize(x.reshape(t_, h_ * w_, d_), dim=-1)
            sim = (unit[:-1] * unit[1:]).sum(-1)
            tau = knobs.get("tau", 0.8)
            left = t_ * h_ * w_ - sum(int((sim[s:e] > tau).all(0).sum()) * (e - s)
                                      for s, e in static_windows(sim, tau) if e > s)
            ks += [left, left + 1] if left < t_ * h_ * w_ else []
        for k in ks:
            rows, pos, merged = _by_place(*holitom(x, k, **knobs))
            want_rows, want_pos, want_merged = naive.holitom(x, k, **knobs)
            assert len(pos) == k and pos == want_pos and merged == want_merged, (shape, k)
            assert torch.allclose(rows, torch.tensor(want_rows, dtype=torch.float64), atol=1e-5), (shape, k)


def test_llava_scissor_rows_and_places_follow_a_token_by_token_reference():
    """LLaVA-Scissor's rows (to fp32 rounding) and places equal a reference that searches τ with the pass that
    recomputes every edge and then, in float64 one token at a time, keeps the K largest components (ties: the
    earlier first token), averages them, lets every token join its most similar average and makes each row
    (average + its tokens) / (n + 1): on clips of a few repeated patterns (large components of unequal sizes, some
    tied, more components than K) and of noise (nearly every token alone), K below and above the number of patterns
    (where no τ of the search reaches K: every token its own component)."""
    import naive

    from selector.compare.scissor import llava_scissor

    g = torch.Generator().manual_seed(17)
    patterns = torch.randn(5, 6, generator=g)
    for kind, shape, k in (("patterns", (3, 4, 4, 6), 3), ("patterns", (3, 4, 4, 6), 8), ("noise", (2, 3, 4, 6), 10),
                           ("patterns", (4, 3, 3, 6), 1), ("noise", (1, 3, 3, 6), 9), ("patterns", (3, 4, 4, 6), 4),
                           ("patterns", (3, 4, 4, 6), 6)):  # the last: 11 components, sizes tied, for K = 6
        t_, h_, w_, d_ = shape
        if kind == "patterns":
            which = torch.randint(0, 5, (t_, h_, w_), generator=g)
            x = patterns[which] + 0.05 * torch.randn(*shape, generator=g)
        else:
            x = torch.randn(*shape, generator=g)
        rows, pos, merged = llava_scissor(x, k)
        want_rows, want_pos = naive.llava_scissor(x, k)
        assert pos.tolist() == want_pos and len(want_pos) == k and bool(merged.all()), (kind, shape, k)
        assert torch.allclose(rows.double(), torch.tensor(want_rows, dtype=torch.float64), atol=1e-5), (kind, k)
