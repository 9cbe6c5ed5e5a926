"""The seam between the method and the code that runs its stages: a `Backend` object.

A backend computes the maps (Ĥ, Ĝ, and the score when it fuses it) and may provide its own frame-budget,
pick and index stages and a CUDA-graph runner; what it leaves out falls back to the portable code of
`method.maps` and `method.allocate`. Backends register themselves (`register`, highest priority first);
`choose` returns the first that takes an input, the portable `Reference` when none does. Two wrappers put a
caller's maps in front of the chosen backend's other stages: `Hooks` (entropy/gradient functions) and
`Reused` (the maps of an earlier Selection). The method imports nothing from `selector.backends`: the
backends import this module and register (see `selector/backends/__init__.py`). Imports torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..config import SelectorConfig
from . import allocate, maps

__all__ = ["Maps", "Backend", "Reference", "Hooks", "Reused", "register", "registered", "choose", "EntropyFn",
           "GradientFn"]

EntropyFn = Callable[[torch.Tensor, SelectorConfig], torch.Tensor]
GradientFn = Callable[[torch.Tensor], torch.Tensor]


class Lap(Protocol):
    def lap(self, name: str) -> None: ...


@dataclass(frozen=True)
class Maps:
    """What a backend's map stage returns: Ĥ and Ĝ (T, H, W); the score S and the frame saliency S̄_f when it
    computes them on the way (else None: the method combines them); amax, max |x| as a 0-d device tensor (NaN
    when the input holds NaN/Inf) when it checks the values itself (select_tokens then skips its own pass)."""

    entropy: torch.Tensor
    gradient: torch.Tensor
    score: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    amax: torch.Tensor | None = None


class Backend:
    """The portable stages; a backend overrides the ones it runs faster. Stateless: one instance serves every
    call. `name` is what benchmarks and logs print; `priority` orders `choose`."""

    name = "reference"
    priority = 0
    #: True: `maps` returns amax, so the input is checked after the run instead of by a pass before it
    checks_values = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend {self.name!r}>"

    def usable(self, tokens: torch.Tensor, cfg: SelectorConfig) -> bool:
        """Whether this backend takes tokens (T, H, W, D) under cfg."""
        return True

    def entropy(self, tokens: torch.Tensor, cfg: SelectorConfig) -> torch.Tensor:
        """Ĥ of raw float tokens (one op per window offset, `maps.entropy_map`)."""
        return maps.entropy_map(maps.normalize(tokens), cfg)

    def maps(self, tokens: torch.Tensor, cfg: SelectorConfig, clock: Lap) -> Maps:
        """Ĥ (`entropy`) and Ĝ (`maps.gradient_map`) of float tokens; laps "entropy", "gradient"."""
        entropy = self.entropy(tokens, cfg)
        clock.lap("entropy")
        gradient = maps.gradient_map(tokens)
        clock.lap("gradient")
        return Maps(entropy, gradient)

    def budgets(self, weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
        """B_f from the softmax weights (`allocate.spread_budgets`)."""
        return allocate.spread_budgets(weights, k, b_min, b_max, m)

    def pick(self, score: torch.Tensor, budgets: torch.Tensor, hw: tuple[int, int],
             cfg: SelectorConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(keep, rank, quota), each (T, H·W) (`allocate.pick`)."""
        return allocate.pick(score, budgets, hw, cfg)

    def indices(self, keep: torch.Tensor, budgets: torch.Tensor, k: int) -> torch.Tensor:
        """The k ascending flat positions of keep (T, H·W), without a host sync."""
        return allocate.flat_indices(keep.reshape(-1), k)

    def select_graphed(self, tokens: torch.Tensor, retention: float, cfg: SelectorConfig) -> Any:
        """The whole selection (a `pipeline.Selection`) replayed as a CUDA graph, or None where this backend has
        no graph runner (the selection then runs eagerly)."""
        return None


class Reference(Backend):
    """The portable stages as they are: what `choose` returns when no registered backend takes the input."""


class _Front(Backend):
    """A caller's map stage in front of another backend's budget, pick and index stages."""

    def __init__(self, base: Backend) -> None:
        self.base = base

    def budgets(self, weights: torch.Tensor, k: int, b_min: int, b_max: int, m: int) -> torch.Tensor:
        return self.base.budgets(weights, k, b_min, b_max, m)

    def pick(self, score: torch.Tensor, budgets: torch.Tensor, hw: tuple[int, int],
             cfg: SelectorConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.base.pick(score, budgets, hw, cfg)

    def indices(self, keep: torch.Tensor, budgets: torch.Tensor, k: int) -> torch.Tensor:
        return self.base.indices(keep, budgets, k)


class Hooks(_Front):
    """The caller's entropy function (given unit features and cfg) and/or gradient function (given the raw
    features); a stage left None is the base backend's own."""

    name = "hooks"

    def __init__(self, base: Backend, entropy_fn: EntropyFn | None, gradient_fn: GradientFn | None) -> None:
        super().__init__(base)
        self.entropy_fn, self.gradient_fn = entropy_fn, gradient_fn

    def maps(self, tokens: torch.Tensor, cfg: SelectorConfig, clock: Lap) -> Maps:
        if self.entropy_fn is None:
            entropy = self.base.entropy(tokens, cfg)
        else:
            entropy = self.entropy_fn(maps.normalize(tokens), cfg)
        clock.lap("entropy")
        gradient = (self.gradient_fn or maps.gradient_map)(tokens)
        clock.lap("gradient")
        return Maps(entropy, gradient)


class Reused(_Front):
    """Maps taken as they are (select_tokens' `reuse`): no map stage, no entropy or gradient lap."""

    name = "reuse"

    def __init__(self, base: Backend, entropy: torch.Tensor, gradient: torch.Tensor) -> None:
        super().__init__(base)
        self.fixed = Maps(entropy, gradient)

    def maps(self, tokens: torch.Tensor, cfg: SelectorConfig, clock: Lap) -> Maps:
        return self.fixed


_REGISTRY: list[Backend] = []


def register(backend: Backend) -> Backend:
    """Add a backend (an instance) to those `choose` considers; one of the same name is replaced."""
    if not isinstance(backend, Backend):
        raise TypeError(f"register takes a Backend instance, got {type(backend).__name__}")
    _REGISTRY[:] = sorted([b for b in _REGISTRY if b.name != backend.name] + [backend],
                          key=lambda b: -b.priority)
    return backend


def registered() -> tuple[Backend, ...]:
    """The registered backends, highest priority first."""
    return tuple(_REGISTRY)


_REFERENCE = Reference()


def choose(tokens: torch.Tensor, cfg: SelectorConfig) -> Backend:
    """The backend that runs the selection of tokens under cfg: the highest-priority registered one that takes
    it, else the portable `Reference`."""
    for backend in _REGISTRY:
        if backend.usable(tokens, cfg):
            return backend
    return _REFERENCE
