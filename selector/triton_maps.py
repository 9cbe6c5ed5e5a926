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
import math
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


def _kernels():
    from . import _triton_kernels

    return _triton_kernels


#: launch parameters (measured on an H200, see tools/gpu_triton_sweep.py)
CONFIG = {"NKP": 4, "BD": 32, "num_warps": 4, "STAGES": 1}


def maps_triton(x: torch.Tensor, cfg: SelectorConfig, precision: str = "tf32x3",
                **launch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ĥ, raw gradient magnitude) for a (T, H, W, D) tensor of any float dtype (CUDA, or the Triton
    interpreter). `launch` overrides CONFIG (key rows per program NKP, D chunk BD, num_warps, STAGES)."""
    t_, h_, w_, d_ = x.shape
    x = x.contiguous()
    n = t_ * h_ * w_
    c = {**CONFIG, **launch}
    nkp = min(c["NKP"], 1 << (_key_rows(cfg) - 1).bit_length())
    parts = -(-_key_rows(cfg) // nkp)
    stats = torch.empty((parts, 4, n), device=x.device, dtype=torch.float32)
    g = torch.empty((t_, h_, w_), device=x.device, dtype=torch.float32)
    _kernels().maps_kernel[(t_ * h_, parts)](
        x, stats, g, t_, h_, w_, d_, n, 1.0 / cfg.tau,
        RAD=cfg.window // 2, PRAD=cfg.past_window // 2, KT=cfg.temporal_window, NCUR=cfg.window,
        BW=BLOCK_W, NKP=nkp, BD=c["BD"], PREC=precision, STAGES=c["STAGES"], num_warps=c["num_warps"],
    )
    return _merge(stats).view(t_, h_, w_), g


def _merge(stats: torch.Tensor) -> torch.Tensor:
    """Combine per-part (max, Σe, Σe·l, count) into normalized entropy: H = m + log Σe - Σe·l / Σe."""
    mx, s0, s1, n = stats.unbind(1)
    if stats.shape[0] == 1:
        m, z, zl, cnt = mx[0], s0[0], s1[0], n[0]
    else:
        m = mx.max(0).values
        w = torch.exp(mx - m)
        z, zl, cnt = (s0 * w).sum(0), (s1 * w).sum(0), n.sum(0)
    z = z.clamp_min(1e-30)
    h = m + torch.log(z) - zl / z
    return torch.where(cnt >= 2, h / torch.log(cnt.clamp_min(2.0)), torch.zeros_like(h)).clamp_(0.0, 1.0)


MAX_BUDGET_FRAMES = 256


def budgets_triton(weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
    """Clamp + round-robin redistribution of `allocate.frame_budgets` in one single-program launch."""
    t_ = weights.numel()
    out = torch.empty(t_, dtype=torch.int64, device=weights.device)
    bt = max(16, 1 << (t_ - 1).bit_length())
    iters = max(1, math.ceil(math.log2(m + 2)))
    _kernels().budget_kernel[(1,)](weights.contiguous(), out, t_, k, b_min, b_max, m, iters, BT=bt, num_warps=4)
    return out
