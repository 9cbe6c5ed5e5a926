"""Backends of the selector's stages: `method.stages.Backend` objects that register themselves.

- `triton.Fused` ("triton"): the fused GPU pipeline, features to kept indices in six kernels, on CUDA tensors
  with Triton installed, for grids it supports;
- `cpu.Banded` ("banded"): banded-matmul window entropy, on a CPU and for every grid the Triton path does not
  take (it runs on a GPU too);
- `graphs.Graphed`: what both share, a whole selection replayed as a CUDA graph (select_tokens(...,
  cuda_graph=True)).
`choose(tokens, cfg)` returns the backend object a selection runs on (the portable `method.stages.Reference`
when none takes it). A new backend is a module with a `Graphed` (or `Backend`) subclass, plus its line below.
Imports torch only (Triton lazily).
"""

from __future__ import annotations

from ..method.stages import Backend, choose, register, registered
from . import cpu, triton

__all__ = ["Backend", "choose", "register", "registered"]

register(triton.Fused())
register(cpu.Banded())
