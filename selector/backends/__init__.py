"""Backends of the selector's map stages, chosen in one place (`choose`).

- "triton" (`backends.triton`): the fused GPU pipeline, features to kept indices in six kernels, on CUDA
  tensors with Triton installed, for grids it supports;
- "banded" (`backends.cpu`): banded-matmul window entropy, on a CPU and for every grid the Triton path does
  not take (it runs on a GPU too);
- "hooks": a caller's own entropy/gradient functions (the reference, `method.maps`, in tests);
- "reuse": maps of an earlier Selection (slider moves).
`backends.graphs` replays a whole selection as a CUDA graph (select_tokens(..., cuda_graph=True)).
Imports torch only (Triton lazily).
"""

from __future__ import annotations

import torch

from ..config import SelectorConfig
from . import triton

__all__ = ["choose"]


def choose(tokens: torch.Tensor, cfg: SelectorConfig, hooks: bool = False, reused: bool = False) -> str:
    """Which backend computes the maps of `tokens` under `cfg`: "reuse", "hooks", "triton" or "banded"."""
    if reused:
        return "reuse"
    if hooks:
        return "hooks"
    if triton.fused_usable(tokens, cfg):
        return "triton"
    return "banded"
