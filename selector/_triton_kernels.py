"""Triton kernels of the selector (imported only when a CUDA device and Triton are present).

See `triton_maps` for what they compute and how they are launched.
"""

import triton
import triton.language as tl


@triton.jit
def maps_kernel(x_ptr, stats_ptr, g_ptr, T, H, W, D, N, inv_tau,
                RAD: tl.constexpr, PRAD: tl.constexpr, KT: tl.constexpr, NCUR: tl.constexpr,
                BW: tl.constexpr, NKP: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
                STAGES: tl.constexpr):
    # program (row, part): queries = row (t, r); keys = key rows [part·NKP, (part+1)·NKP) of the
    # neighbourhood's row list (NCUR rows of frame t, then 2·PRAD+1 rows per past frame)
    pid = tl.program_id(0)
    part = tl.program_id(1)
    t = pid // H
    r = pid % H
    q = tl.arange(0, BW)
    kk = tl.arange(0, NKP * BW)
    j = part * NKP + kk // BW
    kc = kk % BW
    prows = 2 * PRAD + 1
    is_cur = j < NCUR
    pj = j - NCUR
    dt = tl.where(is_cur, 0, -(pj // prows) - 1)
    dr = tl.where(is_cur, j - RAD, pj % prows - PRAD)
    krow = r + dr
    kframe = t + dt
    krow_ok = (j < NCUR + (KT - 1) * prows) & (krow >= 0) & (krow < H) & (kframe >= 0)
    kvalid_tok = krow_ok & (kc < W)
    q_ok = q < W
    row_base = (t * H + r) * W
    k_base = (kframe * H + krow) * W + kc
    do_grad = part == 0
    cl = tl.maximum(q - 1, 0)
    cr = tl.minimum(q + 1, W - 1)
    ru = tl.maximum(r - 1, 0)
    rd = tl.minimum(r + 1, H - 1)
    fx = 1.0 / tl.maximum(cr - cl, 1).to(tl.float32)
    fy = 1.0 / tl.maximum(rd - ru, 1).to(tl.float32)
    s = tl.zeros((BW, NKP * BW), dtype=tl.float32)
    nq = tl.zeros((BW,), dtype=tl.float32)
    nk = tl.zeros((NKP * BW,), dtype=tl.float32)
    g2 = tl.zeros((BW,), dtype=tl.float32)
    mg = q_ok & do_grad
    for d0 in tl.range(0, D, BD, num_stages=STAGES):
        d = d0 + tl.arange(0, BD)
        d_ok = d < D
        qv = tl.load(x_ptr + (row_base + q)[:, None] * D + d[None, :], mask=q_ok[:, None] & d_ok[None, :],
                     other=0.0).to(tl.float32)
        kv = tl.load(x_ptr + k_base[:, None] * D + d[None, :], mask=kvalid_tok[:, None] & d_ok[None, :],
                     other=0.0).to(tl.float32)
        s = tl.dot(qv, tl.trans(kv), s, input_precision=PREC)
        nq += tl.sum(qv * qv, axis=1)
        nk += tl.sum(kv * kv, axis=1)
        m2 = mg[:, None] & d_ok[None, :]
        xl = tl.load(x_ptr + (row_base + cl)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        xr = tl.load(x_ptr + (row_base + cr)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        xu = tl.load(x_ptr + ((t * H + ru) * W + q)[:, None] * D + d[None, :], mask=m2,
                     other=0.0).to(tl.float32)
        xd = tl.load(x_ptr + ((t * H + rd) * W + q)[:, None] * D + d[None, :], mask=m2,
                     other=0.0).to(tl.float32)
        gx = (xr - xl) * fx[:, None]
        gy = (xd - xu) * fy
        g2 += tl.sum(gx * gx + gy * gy, axis=1)
    rad_j = tl.where(is_cur, RAD, PRAD)
    dc = kc[None, :] - q[:, None]
    valid = kvalid_tok[None, :] & q_ok[:, None] & (dc <= rad_j[None, :]) & (dc >= -rad_j[None, :])
    valid = valid & ~(is_cur[None, :] & (dr[None, :] == 0) & (dc == 0))
    inv_q = 1.0 / tl.maximum(tl.sqrt(nq), 1e-12)
    inv_k = 1.0 / tl.maximum(tl.sqrt(nk), 1e-12)
    logits = s * inv_q[:, None] * inv_k[None, :] * inv_tau
    logits = tl.where(valid, logits, float("-inf"))
    n = tl.sum(valid.to(tl.float32), axis=1)
    mx = tl.max(logits, axis=1)
    mx = tl.where(n > 0, mx, 0.0)
    p = tl.where(valid, tl.exp(logits - mx[:, None]), 0.0)
    s0 = tl.sum(p, axis=1)
    s1 = tl.sum(p * tl.where(valid, logits, 0.0), axis=1)
    # partial softmax statistics of this part: (max, Σe, Σe·l, count), merged afterwards
    out = stats_ptr + part * 4 * N + row_base + q
    tl.store(out, mx, mask=q_ok)
    tl.store(out + N, s0, mask=q_ok)
    tl.store(out + 2 * N, s1, mask=q_ok)
    tl.store(out + 3 * N, n, mask=q_ok)
    tl.store(g_ptr + row_base + q, tl.sqrt(g2), mask=mg)


@triton.jit(do_not_specialize=["M", "ITERS"])
def _water(cap, pos, ok, amount, M, ITERS, BT: tl.constexpr):
    # one unit per frame per pass, frames visited by increasing pos, frame f taking <= cap[f]
    lo = tl.full((), 0, tl.int64)
    hi = tl.full((), 0, tl.int64) + M
    for _ in range(ITERS):
        mid = (lo + hi + 1) // 2
        fits = tl.sum(tl.where(ok, tl.minimum(cap, mid), 0), axis=0) <= amount
        lo = tl.where(fits, mid, lo)
        hi = tl.where(fits, hi, mid - 1)
    extra = tl.where(ok, tl.minimum(cap, lo), 0)
    left = amount - tl.sum(extra, axis=0)
    elig = ok & (cap > lo)
    before = elig[None, :] & (pos[None, :] < pos[:, None])
    erank = tl.sum(before.to(tl.int64), axis=1)
    return extra + (elig & (erank < left)).to(tl.int64)

@triton.jit(do_not_specialize=["T", "K", "LO", "HI", "M", "ITERS"])  # one compile for every K and shape
def budget_kernel(w_ptr, out_ptr, T, K, LO, HI, M, ITERS, BT: tl.constexpr):
    f = tl.arange(0, BT)
    ok = f < T
    w = tl.load(w_ptr + f, mask=ok, other=-1.0)
    base = (w.to(tl.float64) * K).to(tl.int64)  # w >= 0: truncation is the floor
    base = tl.where(ok, tl.minimum(tl.maximum(base, LO), HI), 0)
    diff = K - tl.sum(base, axis=0)
    wf = w[:, None]
    wg = w[None, :]
    before = ok[None, :] & ((wg > wf) | ((wg == wf) & (f[None, :] < f[:, None])))
    rank = tl.sum(before.to(tl.int64), axis=1)  # 0 = highest weight, ties to the lower index
    add = _water(HI - base, rank, ok, tl.maximum(diff, 0), M, ITERS, BT)
    cut = _water(base - LO, T - 1 - rank, ok, tl.maximum(-diff, 0), M, ITERS, BT)
    tl.store(out_ptr + f, base + add - cut, mask=ok)
