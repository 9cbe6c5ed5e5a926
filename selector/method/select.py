"""`select_tokens`: ENTROPY-SELECT end to end, the public entry point (checks, reuse of maps, CUDA graphs)."""

from __future__ import annotations

import math

import torch

from ..config import SelectorConfig, SelectorError
from . import stages
from .pipeline import MAP_FIELDS, Clock, Selection, check_finite, num_kept, rescale_for, run_selector
from .stages import EntropyFn, GradientFn

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
    gradient_fn: GradientFn | None = None,
    cuda_graph: bool = False,
    reuse: Selection | None = None,
) -> Selection:
    """Select K = max(1, floor(r·T·H·W)) tokens of a (T, H, W, D) grid with ENTROPY-SELECT.

    Computed in float32 on the device of `tokens`. On a CUDA device with Triton, one fused kernel
    computes both maps (`backends.triton`); elsewhere the entropy stage is the banded-matmul one
    (`backends.cpu`); `stages.choose` returns the backend object that runs the stages, and
    `method.maps.entropy_map` is the one-op-per-offset reference. `entropy_fn` / `gradient_fn` replace those
    stages; `timed=False` skips the per-stage clock (and its CUDA syncs); `cuda_graph=True` on a CUDA tensor
    captures the selector once per shape, retention and config and replays it (the backend's `select_graphed`,
    `backends.graphs`; eager where the backend has none, and with entropy_fn / gradient_fn). `reuse`: an earlier
    Selection of the same tokens whose maps still hold — same grid, the same τ, k, K_t, k_past, and the same
    tensor or one with equal values (raises SelectorError otherwise): its Ĥ and Ĝ are taken as they are, and only
    the score, budgets and pick are computed, so a sweep over r, α, ρ or g pays for the maps once (the app does
    this on every slider move; `cuda_graph` does not apply then).

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
    r = float(retention)
    k = num_kept(r, tokens.shape[0] * tokens.shape[1] * tokens.shape[2])
    backend = stages.choose(tokens, cfg)
    if reuse is not None:
        scale = check_finite(tokens)  # bad values are named before any question of reuse
        backend = stages.Reused(backend, *_reused_maps(reuse, tokens, cfg, entropy_fn, gradient_fn))
        return run_selector(tokens, k, r, cfg, backend, Clock(tokens.device, timed), scale)[0]
    if entropy_fn is not None or gradient_fn is not None:
        backend = stages.Hooks(backend, entropy_fn, gradient_fn)
    elif cuda_graph and tokens.is_cuda:
        graphed = backend.select_graphed(tokens, r, cfg)
        if graphed is not None:
            return graphed
    if backend.checks_values:
        # the backend checks the values with its own row statistics after the run: no extra pass over the
        # features and no host sync before its kernels are queued
        sel, amax = run_selector(tokens, k, r, cfg, backend, Clock(tokens.device, timed))
        scale = rescale_for(float(amax), tokens)  # type: ignore[arg-type]  # raises on NaN/Inf
        if scale == 1.0:
            return sel
    else:
        scale = check_finite(tokens)
    return run_selector(tokens, k, r, cfg, backend, Clock(tokens.device, timed), scale)[0]


def _reused_maps(reuse: Selection, tokens: torch.Tensor, cfg: SelectorConfig, entropy_fn: EntropyFn | None,
                 gradient_fn: GradientFn | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Ĥ, Ĝ) of `reuse` after checking that they are the maps select_tokens would compute for tokens and cfg."""
    if not isinstance(reuse, Selection):
        raise SelectorError(f"reuse must be a Selection, got {type(reuse).__name__}")
    if entropy_fn is not None or gradient_fn is not None:
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

