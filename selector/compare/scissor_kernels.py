"""Triton kernels of LLaVA-Scissor on a GPU (imported only where Triton is present; `scissor` says when).

`pairs_kernel` multiplies fp16 rows tile by tile (products summed in fp32, as `scissor` screens them) and keeps
every (i, j) whose screened product exceeds `cut`, appended to three flat outputs at positions taken one by one
from a counter: no block of products is written to memory. Tiles run in groups of GROUP rows of tiles, so that a
group's operands are read from memory once and then from L2.

`forest_kernel` builds each frame's maximum spanning tree (Prim's algorithm from the frame's first token) over its
similarities: one program per frame, the frame's row of best links in registers.

`dots_kernel` recomputes the products of given pairs of rows in fp32, reading each row once per pair.
"""

import os
import sys

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only PyTorch has no Triton: `scissor` never imports this module there
    if "pytest" in sys.modules and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        import pytest  # pytest's --doctest-modules collects every module: skip this one there, with the reason

        pytest.skip("triton is not installed (a CPU-only PyTorch): its kernels cannot be imported",
                    allow_module_level=True)
    raise


@triton.jit
def _screened(ah_ptr, bh_ptr, rm, rn, D, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
              EVEN_K: tl.constexpr):
    # the (BM, BN) tile of fp16 products, summed in fp32, of rows rm of a and rn of b (indices in range), D long
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    rk = tl.arange(0, BK)
    base_a = rm[:, None].to(tl.int64) * D + rk[None, :]
    base_b = rn[:, None].to(tl.int64) * D + rk[None, :]
    for k in range(0, D, BK):
        if EVEN_K:
            ah = tl.load(ah_ptr + base_a + k)
            bh = tl.load(bh_ptr + base_b + k)
        else:
            ka = (k + rk)[None, :] < D
            ah = tl.load(ah_ptr + base_a + k, mask=ka, other=0.0)
            bh = tl.load(bh_ptr + base_b + k, mask=ka, other=0.0)
        acc = tl.dot(ah, tl.trans(bh), acc)
    return acc


@triton.jit(do_not_specialize=["n_a", "n_b", "cut", "upper_from", "cap"])
def pairs_kernel(ah_ptr, bh_ptr, n_a, n_b, D, cut, upper_from, out_r, out_c, out_v, count_ptr, cap,
                 UPPER: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr,
                 EVEN_K: tl.constexpr):
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(n_a, BM)
    tiles_n = tl.cdiv(n_b, BN)
    per_group = GROUP * tiles_n
    first_m = (pid // per_group) * GROUP
    rows = tl.minimum(tiles_m - first_m, GROUP)
    pid_m = first_m + (pid % per_group) % rows
    pid_n = (pid % per_group) // rows
    live = True
    if UPPER:  # only columns j > upper_from + i: a tile wholly on or below that diagonal has nothing to give
        live = pid_n * BN + BN - 1 > upper_from + pid_m * BM
    if live:
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        acc = _screened(ah_ptr, bh_ptr, rm % n_a, rn % n_b, D, BM, BN, BK, EVEN_K)
        hit = (acc > cut) & (rm < n_a)[:, None] & (rn < n_b)[None, :]
        if UPPER:
            hit = hit & (rn[None, :] > (rm[:, None] + upper_from))
        # a position per hit from the counter itself (the order is the caller's to set)
        pos = tl.atomic_add(count_ptr + tl.zeros((BM, BN), dtype=tl.int32), hit.to(tl.int64), mask=hit,
                            sem="relaxed")
        ok = hit & (pos < cap)
        tl.store(out_r + pos, rm[:, None] + tl.zeros((BM, BN), dtype=tl.int32), mask=ok)
        tl.store(out_c + pos, rn[None, :] + tl.zeros((BM, BN), dtype=tl.int32), mask=ok)
        tl.store(out_v + pos, acc, mask=ok)


@triton.jit(do_not_specialize=["m"])
def forest_kernel(sims_ptr, parent_ptr, weight_ptr, m, BLOCK: tl.constexpr):
    # frame f's (m, m) similarities -> each token's parent (flat index) in a maximum spanning tree grown from the
    # frame's first token, and the similarity of that tree edge (the root's: -inf)
    f = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    live = offs < m
    base = sims_ptr + f.to(tl.int64) * m * m
    best = tl.load(base + offs, mask=live, other=float("-inf"))  # each token's best link into the tree so far
    parent = tl.zeros((BLOCK,), dtype=tl.int32)
    done = (offs == 0) | ~live
    for _ in range(1, m):
        v = tl.argmax(tl.where(done, float("-inf"), best), axis=0)  # the token with the best link joins
        done = done | (offs == v)
        row = tl.load(base + v.to(tl.int64) * m + offs, mask=live, other=float("-inf"))
        better = (row > best) & ~done  # a joined token's link stays the one it joined by
        best = tl.where(better, row, best)
        parent = tl.where(better, v, parent)
    out = f.to(tl.int64) * m + offs
    tl.store(parent_ptr + out, (parent + f * m).to(tl.int64), mask=live)
    tl.store(weight_ptr + out, tl.where(offs == 0, float("-inf"), best), mask=live)


@triton.jit(do_not_specialize=["n"])
def dots_kernel(a_ptr, b_ptr, r_ptr, c_ptr, out_ptr, n, D, BP: tl.constexpr, BD: tl.constexpr):
    # out[p] = a[r[p]] · b[c[p]] in fp32 (rows D long), BP pairs per program
    rp = tl.program_id(0) * BP + tl.arange(0, BP)
    live = rp < n
    ri = tl.load(r_ptr + rp, mask=live, other=0).to(tl.int64) * D
    ci = tl.load(c_ptr + rp, mask=live, other=0).to(tl.int64) * D
    acc = tl.zeros((BP,), dtype=tl.float32)
    for k in range(0, D, BD):
        kk = k + tl.arange(0, BD)
        m = live[:, None] & (kk < D)[None, :]
        x = tl.load(a_ptr + ri[:, None] + kk[None, :], mask=m, other=0.0)
        y = tl.load(b_ptr + ci[:, None] + kk[None, :], mask=m, other=0.0)
        acc += tl.sum(x * y, axis=1)
    tl.store(out_ptr + rp, acc, mask=live)
