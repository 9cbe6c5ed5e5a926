"""One Triton kernel for both maps on a GPU: window entropy Ĥ and raw gradient magnitude, one pass.

Each program takes one row (t, r) of up to 32 query tokens and the ≤ 16 key rows its windows reach
(k rows of frame t, k_past rows of each of the K_t-1 past frames), loops over the feature dimension in
chunks, and accumulates with tensor cores (tl.dot, "tf32x3": float32 accuracy) the raw dot products
query × key (32 × 16·32), the squared norms of queries and keys, and the squared central differences of
the gradient. Normalizing by the norms afterwards gives the cosines without a separate pass over the
features; the window mask, the softmax and the entropy are computed in registers. Features are read
from device memory about once (the key rows of neighbouring programs hit the L2 cache).

Imports torch and triton only; `available()` says whether it can run here.
"""

from __future__ import annotations

import functools
import os

import torch

from .config import SelectorConfig

__all__ = ["available", "maps_triton", "supports", "usable", "ENABLED"]

#: ENTROPY_SELECT_TRITON=0 switches the kernel off (the banded torch path is used instead).
ENABLED = os.environ.get("ENTROPY_SELECT_TRITON", "1") != "0"

BLOCK_W = 32
MAX_KEY_ROWS = 16


def _key_rows(cfg: SelectorConfig) -> int:
    return cfg.window + (cfg.temporal_window - 1) * cfg.past_window


def supports(shape: tuple[int, ...], cfg: SelectorConfig) -> bool:
    """Grids up to 32 tokens wide and neighbourhoods of at most 16 key rows (the defaults use 11)."""
    return shape[2] <= BLOCK_W and _key_rows(cfg) <= MAX_KEY_ROWS


def usable(x: torch.Tensor, cfg: SelectorConfig) -> bool:
    return ENABLED and x.is_cuda and available() and supports(tuple(x.shape), cfg)


@functools.lru_cache(maxsize=1)
def available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@functools.lru_cache(maxsize=1)
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def maps_kernel(x_ptr, h_ptr, g_ptr, T, H, W, D, inv_tau,
                    RAD: tl.constexpr, PRAD: tl.constexpr, KT: tl.constexpr, NCUR: tl.constexpr,
                    BW: tl.constexpr, NK: tl.constexpr, BD: tl.constexpr, PREC: tl.constexpr):
        pid = tl.program_id(0)
        t = pid // H
        r = pid % H
        q = tl.arange(0, BW)  # query columns
        kk = tl.arange(0, NK * BW)  # keys: key row j = kk // BW, column kk % BW
        j = kk // BW
        kc = kk % BW
        # key row j → (dt, dr): rows 0..NCUR-1 are frame t, then PROWS rows per past frame
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
        # gradient neighbours (numpy.gradient rule: central inside, one-sided at the borders)
        cl = tl.maximum(q - 1, 0)
        cr = tl.minimum(q + 1, W - 1)
        ru = tl.maximum(r - 1, 0)
        rd = tl.minimum(r + 1, H - 1)
        fx = 1.0 / tl.maximum(cr - cl, 1).to(tl.float32)
        fy = 1.0 / tl.maximum(rd - ru, 1).to(tl.float32)
        s = tl.zeros((BW, NK * BW), dtype=tl.float32)
        nq = tl.zeros((BW,), dtype=tl.float32)
        nk = tl.zeros((NK * BW,), dtype=tl.float32)
        g2 = tl.zeros((BW,), dtype=tl.float32)
        for d0 in range(0, D, BD):
            d = d0 + tl.arange(0, BD)
            d_ok = d < D
            qv = tl.load(x_ptr + (row_base + q)[:, None] * D + d[None, :], mask=q_ok[:, None] & d_ok[None, :],
                         other=0.0).to(tl.float32)
            kv = tl.load(x_ptr + k_base[:, None] * D + d[None, :], mask=kvalid_tok[:, None] & d_ok[None, :],
                         other=0.0).to(tl.float32)
            s = tl.dot(qv, tl.trans(kv), s, input_precision=PREC)
            nq += tl.sum(qv * qv, axis=1)
            nk += tl.sum(kv * kv, axis=1)
            m2 = q_ok[:, None] & d_ok[None, :]
            xl = tl.load(x_ptr + (row_base + cl)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
            xr = tl.load(x_ptr + (row_base + cr)[:, None] * D + d[None, :], mask=m2, other=0.0).to(tl.float32)
            xu = tl.load(x_ptr + ((t * H + ru) * W + q)[:, None] * D + d[None, :], mask=m2,
                         other=0.0).to(tl.float32)
            xd = tl.load(x_ptr + ((t * H + rd) * W + q)[:, None] * D + d[None, :], mask=m2,
                         other=0.0).to(tl.float32)
            gx = (xr - xl) * fx[:, None]
            gy = (xd - xu) * fy
            g2 += tl.sum(gx * gx + gy * gy, axis=1)
        # window mask: |column offset| within the row's radius, never the query itself
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
        s0 = tl.maximum(s0, 1e-30)
        ent = mx + tl.log(s0) - s1 / s0
        ent = tl.where(n >= 2, ent / tl.log(tl.maximum(n, 2.0)), 0.0)
        ent = tl.minimum(tl.maximum(ent, 0.0), 1.0)
        tl.store(h_ptr + row_base + q, ent, mask=q_ok)
        tl.store(g_ptr + row_base + q, tl.sqrt(g2), mask=q_ok)

    return maps_kernel


def maps_triton(x: torch.Tensor, cfg: SelectorConfig, precision: str = "tf32x3") -> tuple[torch.Tensor, torch.Tensor]:
    """(Ĥ, raw gradient magnitude) for a contiguous (T, H, W, D) CUDA tensor of any float dtype."""
    t_, h_, w_, d_ = x.shape
    x = x.contiguous()
    h = torch.empty((t_, h_, w_), device=x.device, dtype=torch.float32)
    g = torch.empty_like(h)
    nk = 1 << (_key_rows(cfg) - 1).bit_length()  # key rows padded to a power of two
    _kernel()[(t_ * h_,)](
        x, h, g, t_, h_, w_, d_, 1.0 / cfg.tau,
        RAD=cfg.window // 2, PRAD=cfg.past_window // 2, KT=cfg.temporal_window, NCUR=cfg.window,
        BW=BLOCK_W, NK=nk, BD=32, PREC=precision, num_warps=8,
    )
    return h, g
