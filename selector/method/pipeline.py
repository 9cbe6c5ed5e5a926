"""The method on checked inputs (Algorithm 1 of the paper): maps, score, frame budgets, pick, and the result type.

`run_selector` takes its stages from a `stages.Backend` object; `select.select_tokens` is the public entry that
checks inputs, chooses the backend and picks eager or CUDA-graph execution. Imports torch only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import SelectorConfig, SelectorError
from . import allocate
from .stages import Backend, EntropyFn

__all__ = ["Selection", "run_selector", "num_kept", "check_finite", "rescale_for", "Clock", "MAP_FIELDS", "EntropyFn"]


@dataclass(frozen=True)
class Selection:
    """What the selector kept and why. Tensors live on the device of the input tokens.

    Attributes:
        keep: bool (T, H, W), True at every position in `indices` (fused anchors included).
        indices: int64 (K,), ascending flat indices into T·H·W.
        entropy: float32 (T, H, W), normalized local entropy Ĥ in [0, 1].
        gradient: float32 (T, H, W), min-max normalized gradient magnitude Ĝ in [0, 1].
        score: float32 (T, H, W), S = α·Ĥ + (1-α)·Ĝ in [0, 1].
        budgets: int64 (T,), tokens per frame B_f, summing to K.
        tokens: (K, D) in the dtype of the input, rows in the order of `indices` (a property: gathered from the
            input on first access and cached; `gather_into` writes them straight into a buffer of the caller's).
        fused: bool (K,), True for rows that are grid-fusion tokens (anchored at `indices`).
        frame_saliency: float32 (T,), top-q mean score S̄_f.
        frame_weights: float32 (T,), softmax weights w_f of Eq. (4).
        timings_ms: wall time per stage (empty when timing was switched off).
        config: the SelectorConfig used; retention: the r asked for.
        source: the input the rows come from (the caller's tensor, not a copy); rows: the (K, D) rows once gathered
            (computed at once with grid fusion, whose merged rows are not the input's).

    Selecting costs the same at every retention; copying out the K kept rows is a memory copy that grows with
    K, so it is left to the consumer: a VLM writes them once, straight into its input embeddings.
    """

    keep: torch.Tensor
    indices: torch.Tensor
    entropy: torch.Tensor
    gradient: torch.Tensor
    score: torch.Tensor
    budgets: torch.Tensor
    fused: torch.Tensor
    frame_saliency: torch.Tensor
    frame_weights: torch.Tensor
    config: SelectorConfig
    retention: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: torch.Tensor | None = field(default=None, repr=False, compare=False)
    rows: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def tokens(self) -> torch.Tensor:
        """(K, D) kept rows in the input's dtype, in the order of `indices` (gathered on first access)."""
        if self.rows is None:
            object.__setattr__(self, "rows", self.gather_into())  # a cache on a frozen dataclass
        assert self.rows is not None
        return self.rows

    def gather_into(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """The kept rows written into `out` (K, D), a contiguous buffer of the input's dtype and device (e.g.
        the slice of a VLM's input embeddings they belong to), or into a new tensor; returns it."""
        ref = self.rows if self.rows is not None else self.source  # the rows themselves, or their features
        if ref is None:
            raise SelectorError("this Selection holds neither its rows nor the features they come from")
        k, d = self.num_tokens, int(ref.shape[-1])
        if out is not None:
            if tuple(out.shape) != (k, d) or not out.is_contiguous():
                raise SelectorError(f"gather_into needs a contiguous ({k}, {d}) buffer, got "
                                    f"{'non-contiguous ' if not out.is_contiguous() else ''}{tuple(out.shape)}")
            if out.dtype != ref.dtype:
                raise SelectorError(f"gather_into needs a {ref.dtype} buffer, got {out.dtype}")
        if self.rows is not None:
            return self.rows if out is None else out.copy_(self.rows)
        return torch.index_select(ref.reshape(-1, d), 0, self.indices, out=out)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the token grid."""
        t_, h_, w_ = self.keep.shape
        return (t_, h_, w_)

    @property
    def num_tokens(self) -> int:
        """K, the number of output rows."""
        return int(self.indices.numel())

    @property
    def anchors(self) -> torch.Tensor:
        """Flat indices where fused tokens are anchored (empty without grid fusion)."""
        return self.indices[self.fused]

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: token counts, grid, budgets, timings."""
        t_, h_, w_ = self.grid_shape
        return {
            "tokens_total": t_ * h_ * w_,
            "tokens_kept": self.num_tokens,
            "fused_tokens": int(self.fused.sum()),
            "retention": self.retention,
            "grid": [t_, h_, w_],
            "budgets": [int(b) for b in self.budgets.tolist()],
            "timings_ms": {k: round(v, 4) for k, v in self.timings_ms.items()},
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
        }


def num_kept(retention: float, n: int) -> int:
    """K = max(1, floor(r·N)); a 1e-9 slack absorbs binary rounding of decimal r (0.57·100 = 57).

    >>> num_kept(0.35, 16 * 27 * 27), num_kept(0.57, 100), num_kept(1e-9, 10)
    (4082, 57, 1)
    """
    return max(1, min(n, math.floor(retention * n + 1e-9)))


SAFE_RANGE = (2.0**-40, 2.0**40)  # |values| whose squares summed over D stay finite and normal in float32


def check_finite(tokens: torch.Tensor) -> float:
    """Raise on NaN/Inf; return the power-of-two factor that brings the largest |value| near 1 when it is
    outside SAFE_RANGE (else 1.0). Cosines and min-max-normalized gradients do not change under a common
    scale, and a power of two rescales float32 exactly, so huge or tiny features neither overflow nor
    underflow in the sums of squares."""
    lo, hi = (float(v) for v in torch.aminmax(tokens.detach()))  # one pass, no |x| temporary; NaN propagates
    return rescale_for(math.nan if math.isnan(lo) or math.isnan(hi) else max(-lo, hi), tokens)


def rescale_for(amax: float, tokens: torch.Tensor) -> float:
    """check_finite's verdict from the largest |value| (computed eagerly or inside a CUDA graph)."""
    if not math.isfinite(amax):
        bad = int((~torch.isfinite(tokens)).sum())
        raise SelectorError(f"tokens contain {bad} NaN/Inf values (shape {tuple(tokens.shape)})")
    if amax == 0.0 or SAFE_RANGE[0] <= amax <= SAFE_RANGE[1]:
        return 1.0
    return 2.0 ** -math.ceil(math.log2(amax))


#: the config fields the maps depend on (τ, k, K_t, k_past); α, ρ, g, the budget knobs and fusion do not
MAP_FIELDS = ("tau", "window", "temporal_window", "past_window")


def run_selector(tokens: torch.Tensor, k: int, retention: float, cfg: SelectorConfig, backend: Backend,
                 clock: Clock, scale: float = 1.0) -> tuple[Selection, torch.Tensor | None]:
    """The method on checked inputs, its stages taken from `backend` (`stages.choose`); no host
    synchronisation, so a CUDA graph can capture it. The maps and fused rows are computed on tokens·scale (see
    `check_finite`); kept rows are the input's own and are not copied here (see `Selection.tokens`), except
    merged rows with grid fusion. Returns the Selection and the backend's max |x| (None when it does not check
    the values; NaN when the input holds NaN/Inf)."""
    original = tokens
    if scale != 1.0:
        tokens = tokens.float() * scale
    t_, h_, w_, _ = tokens.shape
    found = backend.maps(tokens, cfg, clock)
    score = found.score
    if score is None:
        ranked = 1.0 - found.entropy if cfg.invert_entropy else found.entropy  # the score's Ĥ term
        score = (cfg.alpha * ranked + (1.0 - cfg.alpha) * found.gradient).clamp_(0.0, 1.0)
    flat = score.reshape(t_, h_ * w_)
    budgets, saliency, weights = allocate.frame_budgets(flat, k, cfg, found.saliency, backend.budgets)
    clock.lap("budgets")
    keep, rank, quota = backend.pick(flat, budgets, (h_, w_), cfg)
    clock.lap("select")
    if cfg.grid_fusion:
        keep, indices, fused, rows = _fuse(original, tokens, flat, keep, rank, quota, budgets, k, cfg, scale)
    else:
        indices, rows = backend.indices(keep, budgets, k), None
        fused = torch.zeros(k, dtype=torch.bool, device=tokens.device)
    clock.lap("indices")
    sel = Selection(keep=keep.view(t_, h_, w_), indices=indices, entropy=found.entropy, gradient=found.gradient,
                    score=score, budgets=budgets, fused=fused, frame_saliency=saliency, frame_weights=weights,
                    config=cfg, retention=retention, timings_ms=clock.result(), source=original, rows=rows)
    return sel, found.amax


def _fuse(original: torch.Tensor, tokens: torch.Tensor, flat: torch.Tensor, keep: torch.Tensor,
          rank: torch.Tensor, quota: torch.Tensor, budgets: torch.Tensor, k: int, cfg: SelectorConfig,
          scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grid fusion after the pick: (keep, indices, fused-row mask, rows), the merged rows computed here (they
    are not the input's)."""
    t_, h_, w_, d_ = tokens.shape
    n = t_ * h_ * w_
    cells = allocate.cell_ids(h_, w_, cfg.grid, tokens.device)
    keep, anchor, fused_feat = allocate.fuse(tokens, flat, keep, rank, quota, budgets, cells, cfg.grid * cfg.grid)
    indices = allocate.flat_indices(keep.reshape(-1), k)
    fused = anchor.reshape(-1)[indices]
    rows = torch.index_select(original.reshape(n, d_), 0, indices)
    fused_rows = fused_feat.reshape(n, d_)[indices] / scale
    return keep, indices, fused, torch.where(fused[:, None], fused_rows.to(rows.dtype), rows)


class Clock:
    def __init__(self, device: torch.device, enabled: bool) -> None:
        self.enabled = enabled
        self.cuda = device.type == "cuda"
        self.laps: dict[str, float] = {}
        self.t0 = self.last = self._now()

    def _now(self) -> float:
        if self.enabled and self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, name: str) -> None:
        if self.enabled:
            now = self._now()
            self.laps[name] = (now - self.last) * 1e3
            self.last = now

    def result(self) -> dict[str, float]:
        if not self.enabled:
            return {}
        return {**self.laps, "total": (self.last - self.t0) * 1e3}
