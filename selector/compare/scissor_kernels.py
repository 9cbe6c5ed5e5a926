"""Triton kernel of LLaVA-Scissor's screening on a GPU (imported only where Triton is present; `scissor` says when).

`pairs_kernel` multiplies split-fp16 rows (a = hi + lo, products hi·hi' + hi·lo' + lo·hi' summed in fp32, as
`scissor._split`) tile by tile and keeps every (i, j) whose screened product exceeds `cut`, appended to three flat
outputs at positions taken from one counter (one atomic add per tile, positions by a prefix count within the tile):
no block of products is written to memory.
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
def _split_dot(ah_ptr, al_ptr, bh_ptr, bl_ptr, rm, rn, n_a, n_b, D, BM: tl.constexpr, BN: tl.constexpr,
               BK: tl.constexpr):
    # the (BM, BN) tile of split products of rows rm of a and rn of b, each row D long (row stride D)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    rk = tl.arange(0, BK)
    ra = rm < n_a
    rb = rn < n_b
    for k in range(0, D, BK):
        ka = (k + rk) < D
        ma = ra[:, None] & ka[None, :]
        mb = rb[:, None] & ka[None, :]
        off_a = rm[:, None].to(tl.int64) * D + (k + rk)[None, :]
        off_b = rn[:, None].to(tl.int64) * D + (k + rk)[None, :]
        ah = tl.load(ah_ptr + off_a, mask=ma, other=0.0)
        al = tl.load(al_ptr + off_a, mask=ma, other=0.0)
        bh = tl.load(bh_ptr + off_b, mask=mb, other=0.0)
        bl = tl.load(bl_ptr + off_b, mask=mb, other=0.0)
        acc = tl.dot(ah, tl.trans(bh), acc)
        acc = tl.dot(ah, tl.trans(bl), acc)
        acc = tl.dot(al, tl.trans(bh), acc)
    return acc


@triton.jit(do_not_specialize=["n_a", "n_b", "cut", "upper_from", "cap"])
def pairs_kernel(ah_ptr, al_ptr, bh_ptr, bl_ptr, n_a, n_b, D, cut, upper_from, out_r, out_c, out_v, count_ptr, cap,
                 UPPER: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    live = True
    if UPPER:  # only columns j > upper_from + i: a tile wholly on or below that diagonal has nothing to give
        live = pid_n * BN + BN - 1 > upper_from + pid_m * BM
    if live:
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        acc = _split_dot(ah_ptr, al_ptr, bh_ptr, bl_ptr, rm, rn, n_a, n_b, D, BM, BN, BK)
        hit = (acc > cut) & (rm < n_a)[:, None] & (rn < n_b)[None, :]
        if UPPER:
            hit = hit & (rn[None, :] > (rm[:, None] + upper_from))
        ones = hit.to(tl.int32)
        per_row = tl.sum(ones, axis=1)
        total = tl.sum(per_row, axis=0)
        if total > 0:
            base = tl.atomic_add(count_ptr, total.to(tl.int64))
            row_start = tl.cumsum(per_row, axis=0) - per_row
            pos = base + (row_start[:, None] + tl.cumsum(ones, axis=1) - ones).to(tl.int64)
            ok = hit & (pos < cap)
            rr = rm[:, None] + tl.zeros((BM, BN), dtype=tl.int32)
            cc = rn[None, :] + tl.zeros((BM, BN), dtype=tl.int32)
            tl.store(out_r + pos, rr, mask=ok)
            tl.store(out_c + pos, cc, mask=ok)
            tl.store(out_v + pos, acc, mask=ok)
