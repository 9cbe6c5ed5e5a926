"""Triton backend of the selector on a GPU: six launches from features to kept indices.

   prep     one pass over the features: inverse norms, raw gradient, per-row min/max G, max |x|, NaN count
   entropy  per patch of queries (4×4 fp32, 4×8 half precision): dot products with the union of their windows
            on tensor cores (bf16 native; fp32 as bf16x3, or tf32x3 below BF16X3_MIN_TAU), softmax statistics
            merged online over the key parts, Ĥ written directly (Eq. 2)
   frame    per frame: Ĝ (min-max over the video from the row statistics), S, top-q saliency S̄_f
   budgets  one program (after a torch softmax for w_f)
   pick     per frame: both stable sorts of `allocate.pick` as sorts of packed 64-bit keys
   indices  per (frame, chunk of positions): ascending kept indices (rows are gathered by the consumer)

Grids it does not take (wider than 32 tokens, more than 1024 tokens a frame or 256 frames, more than 16 key rows)
go to the banded backend (`backends.cpu`), which runs on a GPU as well. `Fused` is the backend object. Imports
torch (Triton lazily, in `triton_kernels`); `available()` says whether it can run here.
"""

from __future__ import annotations

import functools
import math

import torch

from ..config import SelectorConfig
from ..method import allocate
from ..method.stages import Backend, Lap, Maps
from ..settings import current
from .graphs import Graphed

__all__ = ["Fused", "available", "fused_supports", "fused_usable", "maps_fused", "scores_fused", "pick_fused",
           "indices_fused", "budgets_triton", "budgets_on_device", "enabled"]


def enabled() -> bool:
    """ENTROPY_SELECT_TRITON=0 (`settings`) switches the kernels off (the banded torch path is used instead)."""
    return current().triton


BLOCK_W = 32
MAX_KEY_ROWS = 16


def _key_rows(cfg: SelectorConfig) -> int:
    return cfg.window + (cfg.temporal_window - 1) * cfg.past_window


@functools.lru_cache(maxsize=1)
def available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _kernels():
    from . import triton_kernels

    return triton_kernels


MAX_BUDGET_FRAMES = 256
#: above this many frames (padded to a power of two) the budget kernel sorts the frames once instead of comparing
#: every pair (H100: pairs 0.0033 ms at 16 frames, sorted 0.011; at 256 frames 0.47 ms against 0.017)
SORT_FRAMES = 32


def budgets_triton(weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int,
                   sort: bool | None = None) -> torch.Tensor:
    """Clamp + round-robin redistribution of `allocate.frame_budgets` in one single-program launch. `sort`
    forces the sorted (True) or pairwise (False) ranking; by default the frame count decides."""
    t_ = weights.numel()
    out = torch.empty(t_, dtype=torch.int64, device=weights.device)
    bt = max(16, 1 << (t_ - 1).bit_length())
    iters = max(1, math.ceil(math.log2(m + 2)))
    _kernels().budget_kernel[(1,)](weights.contiguous(), out, t_, k, b_min, b_max, m, iters, BT=bt,
                                   SORTED=bt > SORT_FRAMES if sort is None else sort, num_warps=4)
    return out


def budgets_on_device(weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
    """`allocate.spread_budgets` in one launch for CUDA weights where the kernel runs, else the torch code."""
    if weights.is_cuda and enabled() and available() and weights.numel() <= MAX_BUDGET_FRAMES:
        return budgets_triton(weights, k, b_min, b_max, m)
    return allocate.spread_budgets(weights, k, b_min, b_max, m)


#: launch parameters of the kernels, swept on the GPU machine (`tools/gpu_entropy_sweep.py`; figures in
#: docs/benchmarks.md): fp32 features take 4×4 query patches with key parts of 64, half-precision ones 4×8 with
#: key parts of 128 and D chunks of 64 (BD16)
FUSED = {"BD": 32, "BD16": 64, "num_warps": 4, "STAGES": 3,
         "PREP_BD": 64, "PREP_BD16": 64, "PREP_RB": 1, "PREP_STAGES": 1, "PREP_WARPS": 8,
         "PQR": 4, "PQC": 4, "PNK": 64, "PQR16": 4, "PQC16": 8, "PNK16": 128, "PREC": "bf16x3"}
#: index launch: MC positions per program (several chunks a frame for frames above MC tokens)
INDEX = {"MC": 128, "num_warps": 4}
MAX_FRAME_TOKENS = 1024
#: fp32 features: "bf16x3" dots (x = hi + lo in bf16, three bf16 tensor-core passes) take 0.22 ms for prep +
#: entropy on 16×27×27×1152 against 0.36 with "tf32x3" (H100). Their cosine error (~1e-7) is divided by τ in
#: the logits: max |ΔĤ| measured 3.6e-7 at τ = 1 but 1.2e-5 at τ = 0.01 (tf32x3: 1.1e-6), so below this τ
#: the tf32x3 dots are used.
BF16X3_MIN_TAU = 0.05


def fused_supports(shape: tuple[int, ...], cfg: SelectorConfig) -> bool:
    """Grids up to 32 wide with at most 1024 tokens a frame, up to 256 frames, ≤ 16 key rows."""
    t_, h_, w_ = shape[:3]
    return (w_ <= BLOCK_W and h_ * w_ <= MAX_FRAME_TOKENS and t_ <= MAX_BUDGET_FRAMES
            and _key_rows(cfg) <= MAX_KEY_ROWS)


def fused_usable(x: torch.Tensor, cfg: SelectorConfig) -> bool:
    return x.is_cuda and enabled() and available() and fused_supports(tuple(x.shape), cfg)


def aligned(x: torch.Tensor) -> torch.Tensor:
    """x contiguous at a 16-byte aligned address (a copy only for odd views): Triton compiles pointer arguments
    by their alignment, and one code path means one rounding of every sum, whatever the input's offset."""
    x = x.contiguous()
    return x.clone() if x.data_ptr() % 16 else x


def _pow2(n: int, lo: int = 16) -> int:
    return max(lo, 1 << (max(n, 1) - 1).bit_length())


def maps_fused(x: torch.Tensor, cfg: SelectorConfig, precision: str | None = None,
               tab: torch.Tensor | None = None, **launch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Ĥ, raw gradient magnitude, row statistics (T·H, 4): min G, max G, max |x|, NaN/Inf count).

    With `tab` (int64 device tensor), the kernels read the features at the address tab[0] instead of x's
    (x gives the shape and dtype): a CUDA graph replays on a new tensor without copying it in."""
    t_, h_, w_, d_ = x.shape
    x = aligned(x)
    ind = tab is not None
    tab = x if tab is None else tab
    c = {**FUSED, **launch}
    bw = _pow2(w_)
    kern = _kernels()
    inv = torch.empty((t_, h_, w_), device=x.device, dtype=torch.float32)
    g = torch.empty_like(inv)
    stats = torch.empty((t_ * h_, 4), device=x.device, dtype=torch.float32)
    half = x.element_size() == 2
    rb = c["PREP_RB"]
    kern.prep_kernel[(t_ * -(-h_ // rb),)](x, tab, inv, g, stats, h_, w_, d_, BW=bw,
                                           BD=c["PREP_BD16" if half else "PREP_BD"], RB=rb,
                                           STAGES=c["PREP_STAGES"], num_warps=c["PREP_WARPS"], IND=ind)
    h = torch.empty_like(inv)
    prec = precision or (c["PREC"] if cfg.tau >= BF16X3_MIN_TAU else "tf32x3")
    native = x.dtype in (torch.bfloat16, torch.float16)
    rad, prad, kt = cfg.window // 2, cfg.past_window // 2, cfg.temporal_window
    # QR×QC query patches against the union of their windows; half-precision features take the *16 patch unless
    # the launch names only the plain keys (then they apply to both dtypes, as the kernel tests and sweeps expect)
    half_patch = native and ("PQR16" in launch or not {"PQR", "PQC", "PNK"} & launch.keys())
    pqr, pqc, pnk = (c["PQR16"], c["PQC16"], c["PNK16"]) if half_patch else (c["PQR"], c["PQC"], c["PNK"])
    nkey = (pqr + 2 * rad) * (pqc + 2 * rad) + (kt - 1) * (pqr + 2 * prad) * (pqc + 2 * prad)
    nk = max(pnk, _pow2(-(-nkey // 4)))
    kern.entropy_patch_kernel[(t_ * -(-h_ // pqr) * -(-w_ // pqc),)](
        x, tab, inv, h, h_, w_, d_, 1.0 / cfg.tau, RAD=rad, PRAD=prad, KT=kt, QR=pqr, QC=pqc, NK=nk,
        BD=c["BD16"] if native else c["BD"], PREC=prec, STAGES=c["STAGES"], num_warps=c["num_warps"],
        NATIVE=native, IND=ind)
    return h, g, stats


def scores_fused(h: torch.Tensor, g: torch.Tensor, stats: torch.Tensor,
                 cfg: SelectorConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Ĝ, S, S̄_f, max |x|) from the maps: one program per frame. The last is a 1-element tensor, NaN
    when the input held any NaN/Inf (the input check, read once after the run)."""
    t_, h_, w_ = h.shape
    m = h_ * w_
    gn, score = torch.empty_like(h), torch.empty_like(h)
    sal = torch.empty(t_, device=h.device, dtype=torch.float32)
    amax = torch.empty(1, device=h.device, dtype=torch.float32)
    nq = max(1, math.ceil(cfg.q * m))
    _kernels().frame_kernel[(t_,)](h, g, stats, gn, score, sal, amax, m, t_ * h_, cfg.alpha, 1.0 - cfg.alpha, nq,
                                   float(nq), BM=_pow2(m), BR=1024, num_warps=4, enable_fp_fusion=False)
    return gn, score, sal, amax


@functools.lru_cache(maxsize=64)
def _kregion_table(m: int, rho: float, g2: int, device: str) -> torch.Tensor:
    """k_region = max(1, floor(B·ρ/g²)) for every budget B in [0, m], in float64 like `allocate.pick`."""
    b = torch.arange(m + 1, dtype=torch.float64)
    return torch.clamp(torch.floor(b * rho / g2).to(torch.int64), min=1).to(device)


def pick_fused(score: torch.Tensor, budgets: torch.Tensor, hw: tuple[int, int],
               cfg: SelectorConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`allocate.pick` (keep, rank, quota) with one program per frame; identical results."""
    t_, m = score.shape
    bm = _pow2(m)
    keep = torch.empty((t_, m), device=score.device, dtype=torch.bool)
    rank = torch.empty((t_, m), device=score.device, dtype=torch.int64)
    quota = torch.empty_like(keep)
    scratch = torch.empty((t_, bm), device=score.device, dtype=torch.int32)
    table = _kregion_table(m, cfg.rho, cfg.grid * cfg.grid, str(score.device))
    _kernels().pick_kernel[(t_,)](score.contiguous(), budgets, table, keep, rank, quota, scratch,
                                  hw[0], hw[1], m, cfg.grid, BM=bm, num_warps=8 if bm >= 512 else 4)
    return keep, rank, quota


def indices_fused(keep: torch.Tensor, budgets: torch.Tensor, k: int, **launch: int) -> torch.Tensor:
    """Ascending flat indices (K,) of the kept tokens, from the keep mask (T, M) and the frame budgets (T,):
    frame f's kept positions in order, after the budgets of the frames before it. No host sync."""
    t_, m = keep.shape
    idx = torch.empty(k, device=keep.device, dtype=torch.int64)
    c = {**INDEX, **launch}
    bm = _pow2(m)
    mc = min(bm, c["MC"])
    _kernels().index_kernel[(t_, -(-m // mc))](keep, budgets, idx, t_, m, BM=bm, BT=_pow2(t_), MC=mc,
                                               num_warps=c["num_warps"])
    return idx


class Fused(Graphed):
    """The six-kernel GPU pipeline as a backend: CUDA tensors with Triton installed, grids `fused_supports`.
    With `tab` its kernels read the features at the address tab[0] (a CUDA graph replayed on new tensors)."""

    name = "triton"
    priority = 20
    checks_values = True

    def __init__(self, tab: torch.Tensor | None = None) -> None:
        self.tab = tab

    def usable(self, tokens: torch.Tensor, cfg: SelectorConfig) -> bool:
        return fused_usable(tokens, cfg)

    def prepare(self, tokens: torch.Tensor) -> torch.Tensor:
        return aligned(tokens)

    def addressed(self, tab: torch.Tensor, cfg: SelectorConfig) -> Backend | None:
        return None if cfg.grid_fusion else Fused(tab)

    def entropy(self, tokens: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
        return maps_fused(tokens, cfg, tab=self.tab)[0]

    def maps(self, tokens: torch.Tensor, cfg: SelectorConfig, clock: Lap) -> Maps:
        entropy, raw, stats = maps_fused(tokens, cfg, tab=self.tab)
        clock.lap("entropy")
        ranked = 1.0 - entropy if cfg.invert_entropy else entropy  # the score's Ĥ term (Selection keeps Ĥ)
        gradient, score, saliency, amax = scores_fused(ranked, raw, stats, cfg)
        clock.lap("gradient")
        return Maps(entropy, gradient, score, saliency, amax)

    def budgets(self, weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
        return budgets_on_device(weights, k, b_min, b_max, m)

    def pick(self, score: torch.Tensor, budgets: torch.Tensor, hw: tuple[int, int],
             cfg: SelectorConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return pick_fused(score, budgets, hw, cfg)

    def indices(self, keep: torch.Tensor, budgets: torch.Tensor, k: int) -> torch.Tensor:
        return indices_fused(keep, budgets, k)
