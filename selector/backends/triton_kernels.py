"""Triton kernels of the selector (imported only when a CUDA device and Triton are present).

See `backends.triton` for what they compute and how they are launched.
"""

import os
import sys

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only PyTorch has no Triton: `backends.triton.available()` is False, nothing imports this
    if "pytest" in sys.modules and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        import pytest  # pytest's --doctest-modules collects every module: skip this one there, with the reason

        pytest.skip("triton is not installed (a CPU-only PyTorch): its kernels cannot be imported",
                    allow_module_level=True)
    raise


@triton.jit
def _central(q, r, W, H):
    # central differences of Eq. (3), one-sided at the borders: the columns left/right of q, the rows
    # above/below r, and 1 / the step between them (a length-1 axis gives 0 - 0 times 1)
    cl = tl.maximum(q - 1, 0)
    cr = tl.minimum(q + 1, W - 1)
    ru = tl.maximum(r - 1, 0)
    rd = tl.minimum(r + 1, H - 1)
    return cl, cr, ru, rd, 1.0 / tl.maximum(cr - cl, 1).to(tl.float32), 1.0 / tl.maximum(rd - ru, 1).to(tl.float32)


@triton.jit(do_not_specialize=["M", "ITERS"])
def _water(cap, pos, ok, amount, M, ITERS, SORTED: tl.constexpr, REVERSE: tl.constexpr):
    # one unit per frame per pass, frames visited by increasing pos, frame f taking <= cap[f]. SORTED: the
    # frames are given in visiting order (REVERSE: backwards), so a frame's turn in the last pass is a prefix
    # count; else it is counted from pos with a T×T comparison (cheaper for a few frames)
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
    e = elig.to(tl.int32)
    if SORTED:
        if REVERSE:
            erank = tl.sum(e, axis=0) - tl.cumsum(e, axis=0)  # eligible frames visited before (later ranks)
        else:
            erank = tl.cumsum(e, axis=0) - e  # eligible frames of an earlier rank
    else:
        erank = tl.sum((elig[None, :] & (pos[None, :] < pos[:, None])).to(tl.int32), axis=1)
    return extra + (elig & (erank < left)).to(tl.int64)


@triton.jit(do_not_specialize=["T", "K", "LO", "HI", "M", "ITERS"])  # one compile for every K and shape
def budget_kernel(w_ptr, out_ptr, T, K, LO, HI, M, ITERS, BT: tl.constexpr, SORTED: tl.constexpr):
    # rank = order by (weight descending, index ascending). SORTED (many frames): the frames are sorted once as
    # packed int64 keys (w >= 0, so its bits order like its values) and every later step runs in that order,
    # O(T log² T); else ranks come from a T×T comparison (256 frames: 0.47 ms that way, 0.017 sorted; H100)
    f = tl.arange(0, BT)
    if SORTED:
        w = tl.load(w_ptr + f, mask=f < T, other=0.0)
        bits = tl.maximum(w.to(tl.int32, bitcast=True), 0).to(tl.int64)
        top = tl.full((), 0x7F800000, tl.int64)  # the bits of +inf: above every weight's
        key = tl.where(f < T, (top - bits) * BT + f, (top + 1) * BT + f)
        fs = (tl.sort(key) % BT).to(tl.int32)  # the frame of each rank; padding ranks last
        rank = f
    else:
        fs = f
    ok = fs < T
    w = tl.load(w_ptr + fs, mask=ok, other=-1.0)
    if not SORTED:
        before = ok[None, :] & ((w[None, :] > w[:, None]) | ((w[None, :] == w[:, None]) & (f[None, :] < f[:, None])))
        rank = tl.sum(before.to(tl.int32), axis=1)  # 0 = highest weight, ties to the lower index
    base = (w.to(tl.float64) * K).to(tl.int64)  # w >= 0: truncation is the floor
    base = tl.where(ok, tl.minimum(tl.maximum(base, LO), HI), 0)
    diff = K - tl.sum(base, axis=0)
    add = _water(HI - base, rank, ok, tl.maximum(diff, 0), M, ITERS, SORTED, False)
    cut = _water(base - LO, T - 1 - rank, ok, tl.maximum(-diff, 0), M, ITERS, SORTED, True)
    tl.store(out_ptr + fs, base + add - cut, mask=ok)


# ---------------------------------------------------------------------------------------------------
# Fused GPU pipeline (triton_maps.select_fused): prep → entropy → frame → budgets → pick → indices.


@triton.jit
def _addr(ptr, tab_ptr, slot: tl.constexpr, IND: tl.constexpr):
    # IND: the tensor's address is read from tab[slot] on the device (a CUDA graph replayed on new tensors
    # without copying them in or out); otherwise `ptr` itself. The launcher guarantees 16-byte aligned
    # addresses (as Triton assumes for pointer arguments), so loads stay vectorized and the compiled code,
    # hence every rounding, is the same as with the pointer passed directly
    if IND:
        return tl.multiple_of(tl.load(tab_ptr + slot).to(tl.pointer_type(ptr.dtype.element_ty)), 16)
    return ptr


@triton.jit
def prep_kernel(x_ptr, tab_ptr, inv_ptr, g_ptr, rowstat_ptr, H, W, D, BW: tl.constexpr, BD: tl.constexpr,
                RB: tl.constexpr, STAGES: tl.constexpr, IND: tl.constexpr):
    # one program per RB token rows (t, r0 .. r0+RB-1): inverse norms, raw gradient magnitude (central
    # differences, one-sided at borders) and row statistics (min G, max G, max |x|, count of NaN/Inf). The
    # rows above and below a block are mostly the block's own (read again from L1, not L2)
    x_ptr = _addr(x_ptr, tab_ptr, 0, IND)
    pid = tl.program_id(0)
    nrb = (H + RB - 1) // RB
    t = pid // nrb
    r0 = pid % nrb * RB
    qq = tl.arange(0, RB * BW)
    r = r0 + qq // BW
    q = qq % BW
    q_ok = (q < W) & (r < H)
    cl, cr, ru, rd, fx, fy = _central(q, r, W, H)
    base = (t * H + r) * W
    ss = tl.zeros((RB * BW,), dtype=tl.float32)
    g2 = tl.zeros((RB * BW,), dtype=tl.float32)
    amax = tl.zeros((RB * BW,), dtype=tl.float32)
    bad = tl.zeros((RB * BW,), dtype=tl.float32)
    for d0 in tl.range(0, D, BD, num_stages=STAGES):
        d = d0 + tl.arange(0, BD)
        m2 = q_ok[:, None] & (d < D)[None, :]
        xc = tl.load(x_ptr + (base + q)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        xl = tl.load(x_ptr + (base + cl)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        xr = tl.load(x_ptr + (base + cr)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        xu = tl.load(x_ptr + ((t * H + ru) * W + q)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        xd = tl.load(x_ptr + ((t * H + rd) * W + q)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
        ss += tl.sum(xc * xc, axis=1)
        ax = tl.abs(xc)
        amax = tl.maximum(amax, tl.max(ax, axis=1))
        bad += tl.sum(((xc != xc) | (ax == float("inf"))).to(tl.float32), axis=1)
        gx = (xr - xl) * fx[:, None]
        gy = (xd - xu) * fy[:, None]
        g2 += tl.sum(gx * gx + gy * gy, axis=1)
    inv = 1.0 / tl.maximum(tl.sqrt(ss), 1e-12)
    g = tl.sqrt(g2)
    tl.store(inv_ptr + base + q, inv, mask=q_ok)
    tl.store(g_ptr + base + q, g, mask=q_ok)
    rows = r0 + tl.arange(0, RB)
    out = rowstat_ptr + (t * H + rows) * 4
    r_ok = rows < H
    tl.store(out, tl.min(tl.reshape(tl.where(q_ok, g, float("inf")), (RB, BW)), axis=1), mask=r_ok)
    tl.store(out + 1, tl.max(tl.reshape(tl.where(q_ok, g, 0.0), (RB, BW)), axis=1), mask=r_ok)
    tl.store(out + 2, tl.max(tl.reshape(amax, (RB, BW)), axis=1), mask=r_ok)
    tl.store(out + 3, tl.sum(tl.reshape(bad, (RB, BW)), axis=1), mask=r_ok)


@triton.jit
def _dot(qv, kv, acc, PREC: tl.constexpr, NATIVE: tl.constexpr):
    # bf16/fp16 features: products of two half-precision values are exact in the fp32 accumulator, so one
    # native tensor-core pass gives the fp32 result; fp32 features: PREC ("tf32x3" = fp32 accuracy)
    if NATIVE:
        return tl.dot(qv, tl.trans(kv), acc)
    if PREC == "bf16x3":  # x = hi + lo in bf16; hi·hi + hi·lo + lo·hi on the bf16 tensor cores, small terms first
        q = qv.to(tl.float32)
        k = kv.to(tl.float32)
        qh = q.to(tl.bfloat16)
        kh = k.to(tl.bfloat16)
        ql = (q - qh.to(tl.float32)).to(tl.bfloat16)
        kl = (k - kh.to(tl.float32)).to(tl.bfloat16)
        acc = tl.dot(ql, tl.trans(kh), acc)
        acc = tl.dot(qh, tl.trans(kl), acc)
        return tl.dot(qh, tl.trans(kh), acc)
    return tl.dot(qv.to(tl.float32), tl.trans(kv.to(tl.float32)), acc, input_precision=PREC)


@triton.jit
def _entropy(m_run, z, zl, cnt):
    # H = m + log Σe - Σe·l / Σe, normalized by log(n valid neighbours); 0 when n <= 1
    zz = tl.maximum(z, 1e-30)
    h = m_run + tl.log(zz) - zl / zz
    h = tl.where(cnt >= 2, h / tl.log(tl.maximum(cnt, 2.0)), 0.0)
    return tl.minimum(tl.maximum(h, 0.0), 1.0)


@triton.jit(do_not_specialize=["M", "NROWS", "NQ"])
def frame_kernel(h_ptr, g_ptr, rowstat_ptr, gn_ptr, score_ptr, sal_ptr, amax_ptr, M, NROWS, alpha, beta, NQ,
                 NQF, BM: tl.constexpr, BR: tl.constexpr):
    # one program per frame: Ĝ = min-max of G over the video (from the row statistics), S = α·Ĥ + (1-α)·Ĝ
    # in torch's operation order (launched without FMA contraction), S̄_f = mean of the NQ best scores
    f = tl.program_id(0)
    lo = tl.full((BR,), float("inf"), dtype=tl.float32)
    hi = tl.zeros((BR,), dtype=tl.float32)
    am = tl.zeros((BR,), dtype=tl.float32)
    bad = tl.zeros((BR,), dtype=tl.float32)
    for r0 in range(0, NROWS, BR):
        rr = r0 + tl.arange(0, BR)
        rok = rr < NROWS
        lo = tl.minimum(lo, tl.load(rowstat_ptr + rr * 4, mask=rok, other=float("inf")))
        hi = tl.maximum(hi, tl.load(rowstat_ptr + rr * 4 + 1, mask=rok, other=0.0))
        am = tl.maximum(am, tl.load(rowstat_ptr + rr * 4 + 2, mask=rok, other=0.0))
        bad += tl.load(rowstat_ptr + rr * 4 + 3, mask=rok, other=0.0)
    glo = tl.min(lo, axis=0)
    ghi = tl.max(hi, axis=0)
    if f == 0:  # max |x| for the range check, NaN when any value was NaN/Inf
        tl.store(amax_ptr, tl.where(tl.sum(bad, axis=0) > 0, float("nan"), tl.max(am, axis=0)))
    span = ghi - glo
    i = tl.arange(0, BM)
    ok = i < M
    g = tl.load(g_ptr + f * M + i, mask=ok, other=0.0)
    h = tl.load(h_ptr + f * M + i, mask=ok, other=0.0)
    gn = tl.where(span > 0, tl.math.div_rn(g - glo, tl.maximum(span, 1e-30)), 0.0)
    s = alpha * h + beta * gn
    s = tl.minimum(tl.maximum(s, 0.0), 1.0)
    tl.store(gn_ptr + f * M + i, gn, mask=ok)
    tl.store(score_ptr + f * M + i, s, mask=ok)
    srt = tl.sort(tl.where(ok, s, -1.0), descending=True)
    top = tl.sum(tl.where(i < NQ, srt, 0.0), axis=0)
    tl.store(sal_ptr + f, tl.math.div_rn(top, NQF))


@triton.jit
def pick_kernel(score_ptr, budget_ptr, kreg_ptr, keep_ptr, rank_ptr, quota_ptr, scratch_ptr, H, W, M, G,
                BM: tl.constexpr):
    # one program per frame: the two stable sorts of allocate.pick as sorts of packed int64 keys
    # (cell | descending score bits | index), ranks written back through a scratch row
    f = tl.program_id(0)
    i = tl.arange(0, BM)
    ok = i < M
    s = tl.load(score_ptr + f * M + i, mask=ok, other=0.0)
    s = tl.where(s == s, tl.minimum(tl.maximum(s, 0.0), 1.0), 0.0) + 0.0  # NaN (bad input, raised later) → 0
    inv = 0x3F800000 - s.to(tl.int32, bitcast=True).to(tl.int64)  # descending score, >= 0
    ii = i.to(tl.int64)
    cell = ((i // W) * G // H) * G + (i % W) * G // W
    pad = tl.full((BM,), 1 << 62, dtype=tl.int64)
    key1 = tl.where(ok, (cell.to(tl.int64) << 42) | (inv << 11) | ii, pad)
    srt = tl.sort(key1)
    tok = (srt & 2047).to(tl.int32)
    cs = (srt >> 42).to(tl.int32)
    csr = cs // G
    csc = cs % G
    rows_before = (csr * H + G - 1) // G
    rows_in = ((csr + 1) * H + G - 1) // G - rows_before
    cols_before = (csc * W + G - 1) // G
    start = rows_before * W + rows_in * cols_before
    tl.store(scratch_ptr + f * BM + tok, i - start, mask=ok)
    tl.debug_barrier()
    ric = tl.load(scratch_ptr + f * BM + i, mask=ok, other=0)
    b = tl.load(budget_ptr + f)
    quota = ric < tl.load(kreg_ptr + b)
    key2 = tl.where(ok, ((1 - quota.to(tl.int64)) << 42) | (inv << 11) | ii, pad)
    srt2 = tl.sort(key2)
    tok2 = (srt2 & 2047).to(tl.int32)
    tl.store(keep_ptr + f * M + tok2, i < b, mask=ok)
    tl.store(rank_ptr + f * M + tok2, i.to(tl.int64), mask=ok)
    tl.store(quota_ptr + f * M + i, quota, mask=ok)


@triton.jit
def index_kernel(keep_ptr, budget_ptr, idx_ptr, T, M, BM: tl.constexpr, BT: tl.constexpr, MC: tl.constexpr):
    # grid (T, position chunks of MC): the kept positions of frame f in ascending order, placed after the
    # budgets of the frames before it (the rows are not copied: the consumer gathers them once)
    f = tl.program_id(0)
    i0 = tl.program_id(1) * MC
    ft = tl.arange(0, BT)
    bud = tl.load(budget_ptr + ft, mask=ft < T, other=0)
    off = tl.sum(tl.where(ft < f, bud, 0), axis=0)
    if MC < BM:  # kept positions of this frame before the chunk
        j = tl.arange(0, BM)
        off += tl.sum((tl.load(keep_ptr + f * M + j, mask=j < i0, other=0) != 0).to(tl.int64), axis=0)
    i = i0 + tl.arange(0, MC)
    ok = i < M
    kp = tl.load(keep_ptr + f * M + i, mask=ok, other=0).to(tl.int32) != 0
    pos = tl.cumsum(kp.to(tl.int32), axis=0) - 1
    tl.store(idx_ptr + (off + pos).to(tl.int64), (f * M + i).to(tl.int64), mask=ok & kp)


@triton.jit
def _part_stats(s, inv_ptr, ktok, k_ok, krow, kc, is_cur, qr, qc, q_ok, inv_q, inv_tau, m_run, z, zl, cnt,
                RAD: tl.constexpr, PRAD: tl.constexpr):
    inv_k = tl.load(inv_ptr + ktok, mask=k_ok, other=0.0)
    rad_j = tl.where(is_cur, RAD, PRAD)
    drr = krow[None, :] - qr[:, None]
    dcc = kc[None, :] - qc[:, None]
    valid = (k_ok[None, :] & q_ok[:, None] & (drr <= rad_j[None, :]) & (drr >= -rad_j[None, :])
             & (dcc <= rad_j[None, :]) & (dcc >= -rad_j[None, :]))
    valid = valid & ~(is_cur[None, :] & (drr == 0) & (dcc == 0))
    logits = s * inv_q[:, None] * inv_k[None, :] * inv_tau
    lg = tl.where(valid, logits, -1e30)
    m_new = tl.maximum(m_run, tl.max(lg, axis=1))
    scale = tl.exp(m_run - m_new)
    p = tl.where(valid, tl.exp(lg - m_new[:, None]), 0.0)
    z = z * scale + tl.sum(p, axis=1)
    zl = zl * scale + tl.sum(p * tl.where(valid, logits, 0.0), axis=1)
    cnt += tl.sum(valid.to(tl.float32), axis=1)
    return m_new, z, zl, cnt


@triton.jit
def _parts_entropy(x_ptr, inv_ptr, qtok, q_ok, qr, qc, D, inv_tau, k0, ok0, kr0, kc0, cur0, k1, ok1, kr1, kc1,
                   cur1, k2, ok2, kr2, kc2, cur2, k3, ok3, kr3, kc3, cur3, RAD: tl.constexpr, PRAD: tl.constexpr,
                   BQ: tl.constexpr, NK: tl.constexpr, NPARTS: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
                   STAGES: tl.constexpr, NATIVE: tl.constexpr):
    # Ĥ of BQ queries against up to four key parts of NK keys: the feature dimension is the outer loop (the
    # query chunk is read once per D chunk, the parts accumulate side by side), then the softmax statistics
    # are merged online part by part
    s0 = tl.zeros((BQ, NK), dtype=tl.float32)
    s1 = tl.zeros((BQ, NK), dtype=tl.float32)
    s2 = tl.zeros((BQ, NK), dtype=tl.float32)
    s3 = tl.zeros((BQ, NK), dtype=tl.float32)
    for d0 in tl.range(0, D, BD, num_stages=STAGES):
        d = d0 + tl.arange(0, BD)
        dm = d < D
        qv = tl.load(x_ptr + qtok[:, None] * D + d[None, :], mask=q_ok[:, None] & dm[None, :], other=0.0)
        kv = tl.load(x_ptr + k0[:, None] * D + d[None, :], mask=ok0[:, None] & dm[None, :], other=0.0)
        s0 = _dot(qv, kv, s0, PREC, NATIVE)
        if NPARTS > 1:
            kv = tl.load(x_ptr + k1[:, None] * D + d[None, :], mask=ok1[:, None] & dm[None, :], other=0.0)
            s1 = _dot(qv, kv, s1, PREC, NATIVE)
        if NPARTS > 2:
            kv = tl.load(x_ptr + k2[:, None] * D + d[None, :], mask=ok2[:, None] & dm[None, :], other=0.0)
            s2 = _dot(qv, kv, s2, PREC, NATIVE)
        if NPARTS > 3:
            kv = tl.load(x_ptr + k3[:, None] * D + d[None, :], mask=ok3[:, None] & dm[None, :], other=0.0)
            s3 = _dot(qv, kv, s3, PREC, NATIVE)
    inv_q = tl.load(inv_ptr + qtok, mask=q_ok, other=0.0)
    m_run = tl.full((BQ,), -1e30, dtype=tl.float32)
    z = tl.zeros((BQ,), dtype=tl.float32)
    zl = tl.zeros((BQ,), dtype=tl.float32)
    cnt = tl.zeros((BQ,), dtype=tl.float32)
    m_run, z, zl, cnt = _part_stats(s0, inv_ptr, k0, ok0, kr0, kc0, cur0, qr, qc, q_ok, inv_q, inv_tau,
                                    m_run, z, zl, cnt, RAD, PRAD)
    if NPARTS > 1:
        m_run, z, zl, cnt = _part_stats(s1, inv_ptr, k1, ok1, kr1, kc1, cur1, qr, qc, q_ok, inv_q, inv_tau,
                                        m_run, z, zl, cnt, RAD, PRAD)
    if NPARTS > 2:
        m_run, z, zl, cnt = _part_stats(s2, inv_ptr, k2, ok2, kr2, kc2, cur2, qr, qc, q_ok, inv_q, inv_tau,
                                        m_run, z, zl, cnt, RAD, PRAD)
    if NPARTS > 3:
        m_run, z, zl, cnt = _part_stats(s3, inv_ptr, k3, ok3, kr3, kc3, cur3, qr, qc, q_ok, inv_q, inv_tau,
                                        m_run, z, zl, cnt, RAD, PRAD)
    return _entropy(m_run, z, zl, cnt)


@triton.jit
def _patch_keys(part, t, r0, c0, H, W, RAD: tl.constexpr, PRAD: tl.constexpr, QR: tl.constexpr,
                QC: tl.constexpr, NK: tl.constexpr, NKEY: tl.constexpr):
    # part `part` (NK keys) of the patch's key list: the current frame's (QR+2·RAD)×(QC+2·RAD) tokens around
    # the patch, then each past frame's (QR+2·PRAD)×(QC+2·PRAD) tokens, row-major
    CC: tl.constexpr = QC + 2 * RAD
    NC: tl.constexpr = (QR + 2 * RAD) * CC
    PC: tl.constexpr = QC + 2 * PRAD
    NP: tl.constexpr = (QR + 2 * PRAD) * PC
    j = part * NK + tl.arange(0, NK)
    is_cur = j < NC
    pj = tl.maximum(j - NC, 0)
    w = pj % NP
    krow = tl.where(is_cur, r0 - RAD + j // CC, r0 - PRAD + w // PC)
    kc = tl.where(is_cur, c0 - RAD + j % CC, c0 - PRAD + w % PC)
    kframe = t - tl.where(is_cur, 0, pj // NP + 1)
    k_ok = (j < NKEY) & (krow >= 0) & (krow < H) & (kc >= 0) & (kc < W) & (kframe >= 0)
    ktok = (kframe * H + krow) * W + kc
    return ktok, k_ok, krow, kc, is_cur


@triton.jit
def entropy_patch_kernel(x_ptr, tab_ptr, inv_ptr, h_ptr, H, W, D, inv_tau,
                         RAD: tl.constexpr, PRAD: tl.constexpr, KT: tl.constexpr, QR: tl.constexpr,
                         QC: tl.constexpr, NK: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr,
                         STAGES: tl.constexpr, NATIVE: tl.constexpr, IND: tl.constexpr):
    # like entropy_rows_kernel (DOUT), but a program's queries are a QR×QC patch of one frame and its keys the
    # union of their windows (not whole key rows): fewer wasted tensor-core products per query
    x_ptr = _addr(x_ptr, tab_ptr, 0, IND)
    ncb = (W + QC - 1) // QC
    nrb = (H + QR - 1) // QR
    pid = tl.program_id(0)
    t = pid // (nrb * ncb)
    r0 = (pid // ncb) % nrb * QR
    c0 = pid % ncb * QC
    q = tl.arange(0, QR * QC)
    qr = r0 + q // QC
    qc = c0 + q % QC
    q_ok = (qr < H) & (qc < W)
    qtok = (t * H + qr) * W + qc
    NKEY: tl.constexpr = (QR + 2 * RAD) * (QC + 2 * RAD) + (KT - 1) * (QR + 2 * PRAD) * (QC + 2 * PRAD)
    NPARTS: tl.constexpr = (NKEY + NK - 1) // NK
    tl.static_assert(NPARTS <= 4)
    k0, ok0, kr0, kc0, cur0 = _patch_keys(0, t, r0, c0, H, W, RAD, PRAD, QR, QC, NK, NKEY)
    k1, ok1, kr1, kc1, cur1 = _patch_keys(1, t, r0, c0, H, W, RAD, PRAD, QR, QC, NK, NKEY)
    k2, ok2, kr2, kc2, cur2 = _patch_keys(2, t, r0, c0, H, W, RAD, PRAD, QR, QC, NK, NKEY)
    k3, ok3, kr3, kc3, cur3 = _patch_keys(3, t, r0, c0, H, W, RAD, PRAD, QR, QC, NK, NKEY)
    BQ: tl.constexpr = QR * QC
    h = _parts_entropy(x_ptr, inv_ptr, qtok, q_ok, qr, qc, D, inv_tau, k0, ok0, kr0, kc0, cur0, k1, ok1, kr1, kc1,
                       cur1, k2, ok2, kr2, kc2, cur2, k3, ok3, kr3, kc3, cur3, RAD, PRAD, BQ, NK, NPARTS, BD, PREC,
                       STAGES, NATIVE)
    tl.store(h_ptr + qtok, h, mask=q_ok)
