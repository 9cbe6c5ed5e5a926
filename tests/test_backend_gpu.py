"""The GPU backends (selector/backends/triton.py, graphs.py) on a CUDA device: equal to the reference and to the
torch stages they replace. Skipped without CUDA. On a GPU machine every CUDA test of the suite runs with
`python -m pytest -m cuda tests/` (docs/benchmarks.md, "Tests on a GPU")."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import require_triton
from strategies import cuda_only, tensor

from selector import SelectorConfig, SelectorError, select_tokens
from selector.method import allocate, maps
from selector.method.pipeline import num_kept


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
    assert backends.choose(x, cfg).name == "banded"
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


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("shape", [(16, 27, 27, 1152), (16, 14, 14, 896), (5, 9, 31, 64), (3, 32, 32, 40),
                                   (2, 1, 1, 8), (40, 3, 5, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_fused_pipeline_stages_equal_torch_stages(shape, dtype):
    """Each kernel of the fused GPU path against the torch stage it replaces, on the same inputs: maps
    within float rounding, scores bit for bit, pick (keep, rank, quota) and gather exactly."""
    from selector.backends import triton as triton_maps
    from selector.method.allocate import flat_indices as _flat_indices

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


def test_triton_budget_kernel_in_interpreter_matches_torch(tmp_path):
    """The GPU budget kernel, run by Triton's interpreter on the CPU (no GPU needed): the torch budgets exactly."""

    require_triton()
    code = """
import torch
from selector import SelectorConfig
from selector.method import maps
torch.manual_seed(0)
worst = 0.0
from selector.method import allocate
from selector.backends.triton import budgets_triton
gen = torch.Generator().manual_seed(1)
for i in range(68):  # the budget kernel against the torch budgets, integers exactly (8 long clips, ≤ 256 frames)
    t = int(torch.randint(1, 40, (1,), generator=gen)) if i < 60 else int(torch.randint(129, 257, (1,), generator=gen))
    m = int(torch.randint(1, 60, (1,), generator=gen))
    k = int(torch.randint(1, t * m + 1, (1,), generator=gen))
    cfg = SelectorConfig(min_tokens=int(torch.randint(0, 9, (1,), generator=gen)))
    score = (torch.rand(t, m, generator=gen) * 4).round() / 4
    ref, _, w = allocate.frame_budgets(score, k, cfg)
    lo, hi = min(cfg.min_tokens, m), m
    if k < t * lo:
        lo, hi = k // t, min(hi, -(-k // t))
    for sort in (False, True):  # both rankings of the kernel (pairwise and sorted) on every case
        if not torch.equal(budgets_triton(w, k, lo, hi, m, sort=sort), ref):
            worst = 1.0
print(worst)
"""
    import os
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(r.stdout.strip().splitlines()[-1]) < 2e-5


def test_fused_gpu_pipeline_in_interpreter_matches_torch_stages():
    """The fused pipeline's kernels (prep, entropy, frame, pick, indices), run by Triton's interpreter:
    maps within float rounding of the reference, scores, pick and kept indices identical to the torch stages.
    The interpreter computes tl.dot on bf16 operands wrongly (Triton 3.8: errors ~1e10 on a plain 16×16
    product), so the fp32 dots run as tf32x3 here (fp32 in the interpreter); bf16x3 is checked on the GPU."""
    import subprocess

    require_triton()
    code = """
import math, torch
from selector import SelectorConfig
from selector.method import allocate, maps
from selector.method.pipeline import num_kept
from selector.method.allocate import flat_indices as _flat_indices
from selector.backends import triton as tm
torch.manual_seed(0)
worst = 0.0
for cfg in (SelectorConfig(), SelectorConfig(tau=0.05, window=3, temporal_window=4, past_window=3, grid=3, rho=0.7),
            SelectorConfig(window=1, temporal_window=1)):
    for shape, pqr, pqc in (((3, 5, 6, 40), 4, 4), ((2, 4, 1, 2), 4, 8), ((2, 3, 27, 33), 4, 4),
                            ((2, 7, 5, 20), 2, 4), ((3, 9, 13, 24), 4, 8), ((2, 1, 27, 16), 4, 4)):
        x = torch.randn(*shape)
        t_, hh, ww, d_ = shape
        m = hh * ww
        h, g, st = tm.maps_fused(x, cfg, "tf32x3", STAGES=1, PQR=pqr, PQC=pqc)
        worst = max(worst, float((h - maps.entropy_map(maps.normalize(x), cfg)).abs().max()),
                    float((g - maps.gradient_magnitude(x)).abs().max()))
        assert torch.equal(st[:, 2], x.abs().amax(-1).reshape(-1, ww).amax(-1))
        gn, score, sal, amax = tm.scores_fused(h, g, st, cfg)
        assert float(amax) == float(x.abs().max())
        assert torch.equal(gn, maps.minmax(g))
        assert torch.equal(score, (cfg.alpha * h + (1.0 - cfg.alpha) * gn).clamp_(0.0, 1.0))
        flat = score.reshape(t_, m)
        worst = max(worst, float((sal - flat.topk(max(1, math.ceil(cfg.q * m)), dim=1).values.mean(1)).abs().max()))
        for r in (0.05, 0.35, 1.0):
            k = num_kept(r, t_ * m)
            budgets, _, _ = allocate.frame_budgets(flat, k, cfg)
            got, want = tm.pick_fused(flat, budgets, (hh, ww), cfg), allocate.pick(flat, budgets, (hh, ww), cfg)
            assert all(torch.equal(a, b) for a, b in zip(got, want)), (shape, cfg, r)
            ref = _flat_indices(got[0].reshape(-1), k)
            # the default launch; at r = 0.35 also chunks of 16 positions (several a frame)
            for launch in ({}, {"MC": 16, "num_warps": 2}) if r == 0.35 else ({},):
                assert torch.equal(tm.indices_fused(got[0], budgets, k, **launch), ref), launch
# through the address table (how a CUDA graph reads new features in place): the placeholder only gives the shape
x = torch.randn(3, 5, 6, 40)
cfg = SelectorConfig()
ph = torch.zeros_like(x)
k = num_kept(0.35, 90)
tab = torch.tensor([x.data_ptr()], dtype=torch.int64)
want = tm.maps_fused(x, cfg, "tf32x3", STAGES=1)
got = tm.maps_fused(ph, cfg, "tf32x3", tab=tab, STAGES=1)
assert all(torch.equal(a, b) for a, b in zip(got, want))
for rb in (2, 4):  # prep on blocks of rows (5 rows: a partial last block): the same numbers, bit for bit
    got = tm.maps_fused(x, cfg, "tf32x3", STAGES=1, PREP_RB=rb)
    assert all(torch.equal(a, b) for a, b in zip(got, want)), rb
h, g, st = want
gn, score, sal, amax = tm.scores_fused(h, g, st, cfg)
budgets, _, _ = allocate.frame_budgets(score.reshape(3, 30), k, cfg, sal)
keep = tm.pick_fused(score.reshape(3, 30), budgets, (5, 6), cfg)[0]
assert torch.equal(tm.indices_fused(keep, budgets, k), keep.reshape(-1).nonzero()[:, 0])
bad = torch.randn(2, 3, 4, 5)
bad[1, 2, 3, 4] = float("inf")
assert math.isnan(float(tm.scores_fused(*tm.maps_fused(bad, SelectorConfig(), "tf32x3"), SelectorConfig())[3]))
gen = torch.Generator().manual_seed(2)
for _ in range(25):  # many exact ties: scores on a 1/8 lattice, random grids, budgets and cell counts
    t_, hh, ww = (int(torch.randint(1, n, (1,), generator=gen)) for n in (5, 12, 33))
    m = hh * ww
    cfg = SelectorConfig(grid=int(torch.randint(1, 7, (1,), generator=gen)), rho=float(torch.rand(1, generator=gen)),
                         min_tokens=0)
    flat = (torch.rand(t_, m, generator=gen) * 8).round() / 8
    budgets, _, _ = allocate.frame_budgets(flat, int(torch.randint(1, t_ * m + 1, (1,), generator=gen)), cfg)
    got, want = tm.pick_fused(flat, budgets, (hh, ww), cfg), allocate.pick(flat, budgets, (hh, ww), cfg)
    assert all(torch.equal(a, b) for a, b in zip(got, want)), (t_, hh, ww, cfg)
print(worst)
"""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(r.stdout.strip().splitlines()[-1]) < 2e-5
