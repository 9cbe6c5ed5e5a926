"""`select_tokens`: ENTROPY-SELECT end to end, the public entry point (checks, reuse of maps, CUDA graphs)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import backends
from ..backends.graphs import graph_select
from ..config import SelectorConfig, SelectorError
from .pipeline import MAP_FIELDS, Clock, EntropyFn, Selection, check_finite, num_kept, rescale_for, run_selector

__all__ = ["select_tokens"]


def _check(tokens: object, retention: object) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise SelectorError(f"tokens must be a torch.Tensor of shape (T, H, W, D), got {type(tokens).__name__}")
    shape = tuple(tokens.shape)
    if tokens.ndim != 4:
        raise SelectorError(f"tokens must have 4 dims (T, H, W, D), got {tokens.ndim} dims with shape {shape}")
    if min(shape) == 0:
        raise SelectorError(f"tokens has an empty dimension: shape {shape} (T, H, W, D must all be >= 1)")
    if not tokens.is_floating_point():
        raise SelectorError(f"tokens must be a float tensor, got dtype {tokens.dtype} with shape {shape}")
    if isinstance(retention, bool) or not isinstance(retention, (int, float)):
        raise SelectorError(f"retention must be a number in (0, 1], got {retention!r}")
    r = float(retention)
    if math.isnan(r) or not 0.0 < r <= 1.0:
        raise SelectorError(f"retention must be in (0, 1], got {retention} for tokens of shape {shape}")


def select_tokens(
    tokens: torch.Tensor,
    retention: float = 0.35,
    config: SelectorConfig | None = None,
    *,
    timed: bool = True,
    entropy_fn: EntropyFn | None = None,
    gradient_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cuda_graph: bool = False,
    reuse: Selection | None = None,
) -> Selection:
    """Select K = max(1, floor(r·T·H·W)) tokens of a (T, H, W, D) grid with ENTROPY-SELECT.

    Computed in float32 on the device of `tokens`. On a CUDA device with Triton, one fused kernel
    computes both maps (`backends.triton`); elsewhere the entropy stage is the banded-matmul one
    (`backends.cpu.entropy_banded_raw`); `backends.choose` decides. `method.maps.entropy_map` is the
    one-op-per-offset reference. `entropy_fn` / `gradient_fn` replace those stages; `timed=False` skips the
    per-stage clock (and its CUDA syncs); `cuda_graph=True` on a CUDA tensor captures the selector once per shape,
    retention and config and replays it (`backends.graphs.graph_select`). `reuse`: an earlier Selection of the same
    tokens whose maps still hold — same grid, the same τ, k, K_t, k_past, and the same tensor or one with
    equal values (raises SelectorError otherwise): its Ĥ and Ĝ are taken as they are, and only the score,
    budgets and pick are computed, so a sweep over r, α, ρ or g pays for the maps once (the app does this
    on every slider move; `cuda_graph` does not apply then).

    >>> x = torch.randn(4, 6, 6, 8, generator=torch.Generator().manual_seed(0))
    >>> sel = select_tokens(x, retention=0.25)
    >>> sel.num_tokens, int(sel.budgets.sum()), tuple(sel.tokens.shape)
    (36, 36, (36, 8))
    >>> bool((sel.tokens == x.reshape(-1, 8)[sel.indices]).all())
    True
    """
    cfg = SelectorConfig() if config is None else config
    if not isinstance(cfg, SelectorConfig):
        raise SelectorError(f"config must be a SelectorConfig, got {type(cfg).__name__}")
    _check(tokens, retention)
    k = num_kept(float(retention), tokens.shape[0] * tokens.shape[1] * tokens.shape[2])
    if reuse is not None:
        scale = check_finite(tokens)  # bad values are named before any question of reuse
        reused = _reused_maps(reuse, tokens, cfg, entropy_fn is not None or gradient_fn is not None)
        return run_selector(tokens, k, float(retention), cfg, Clock(tokens.device, timed), scale=scale,
                            reused=reused)
    if cuda_graph and tokens.is_cuda:
        return graph_select(tokens, float(retention), cfg)
    if backends.choose(tokens, cfg, hooks=entropy_fn is not None or gradient_fn is not None) == "triton":
        # the fused GPU path checks the values with its own row statistics after the run: no extra pass
        # over the features and no host sync before the kernels are queued
        stats: list[torch.Tensor] = []
        sel = run_selector(tokens, k, float(retention), cfg, Clock(tokens.device, timed), stats_out=stats)
        scale = rescale_for(float(stats[0]), tokens)  # raises on NaN/Inf
        if scale == 1.0:
            return sel
        return run_selector(tokens, k, float(retention), cfg, Clock(tokens.device, timed), scale=scale)
    scale = check_finite(tokens)
    return run_selector(tokens, k, float(retention), cfg, Clock(tokens.device, timed), entropy_fn, gradient_fn,
                        scale)


def _reused_maps(reuse: Selection, tokens: torch.Tensor, cfg: SelectorConfig,
                 hooks: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ĥ, Ĝ) of `reuse` after checking that they are the maps select_tokens would compute for tokens and cfg."""
    if not isinstance(reuse, Selection):
        raise SelectorError(f"reuse must be a Selection, got {type(reuse).__name__}")
    if hooks:
        raise SelectorError("reuse takes the maps of an earlier Selection: do not pass entropy_fn or gradient_fn too")
    if tuple(reuse.entropy.shape) != tuple(tokens.shape[:3]):
        raise SelectorError(f"reuse: its maps are for a {tuple(reuse.entropy.shape)} grid, the tokens are "
                            f"{tuple(tokens.shape[:3])}")
    changed = [f"{f} {getattr(reuse.config, f)} → {getattr(cfg, f)}" for f in MAP_FIELDS
               if getattr(reuse.config, f) != getattr(cfg, f)]
    if changed:
        raise SelectorError("reuse: the maps depend on " + ", ".join(changed) + "; select without reuse")
    if reuse.entropy.device != tokens.device:
        raise SelectorError(f"reuse: its maps are on {reuse.entropy.device}, the tokens on {tokens.device}")
    src = reuse.source  # None: a Selection kept without its features (the caller vouches for them)
    if src is not None and src is not tokens and (
            (src.shape, src.dtype, src.device) != (tokens.shape, tokens.dtype, tokens.device)
            or ((src.data_ptr(), src.stride()) != (tokens.data_ptr(), tokens.stride())
                and not torch.equal(src, tokens))):  # another view or tensor: reused only with the same values
        raise SelectorError("reuse: its maps were computed from other tokens (they hold only for the values the "
                            "Selection was made from); select without reuse")
    return reuse.entropy, reuse.gradient

