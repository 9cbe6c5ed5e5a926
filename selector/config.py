"""Configuration and the one error type of the selector core (imports nothing but the stdlib)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SelectorConfig", "SelectorError"]


#: smallest τ and τ_alloc: below it 1/τ takes float32 past its range (1e-40 gives NaN maps) and long before that
#: every neighbour distribution is one-hot (Ĥ = 0 everywhere at τ = 1e-6 already)
MIN_TEMPERATURE = 1e-6


class SelectorError(ValueError):
    """Bad input to the selector; the message names the value and the shape that failed."""


def _int_field(name: str, value: object, low: int, odd: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SelectorError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < low:
        raise SelectorError(f"{name} must be >= {low}, got {value}")
    if odd and value % 2 == 0:
        raise SelectorError(f"{name} must be odd so the window has a centre token, got {value}")


def _real_field(name: str, value: object, low: float, high: float, low_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SelectorError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad_low = v <= low if low_open else v < low
    if math.isnan(v) or bad_low or v > high:
        bracket = "(" if low_open else "["
        raise SelectorError(f"{name} must be in {bracket}{low}, {high}], got {value}")


@dataclass(frozen=True)
class SelectorConfig:
    """Knobs of ENTROPY-SELECT with the paper's names and defaults (Sec. 3, Tables 5, 6, 8).

    Attributes:
        alpha: α, weight of normalized entropy in S = α·Ĥ + (1-α)·Ĝ. Paper default 0.5.
        tau: τ, temperature of the neighbour softmax (Eq. 2). Paper default 1.0. With cosine
            similarities in [-1, 1], τ = 1 gives near-uniform neighbour distributions, so Ĥ is close
            to 1 almost everywhere; smaller τ (e.g. 0.05) makes the entropy map informative.
        window: k, side of the spatial window in the current frame (odd). Paper default 5.
        temporal_window: K_t, frames in the neighbourhood, the current one and K_t-1 *past* ones
            (never future frames). Paper default 3; 1 means spatial only.
        past_window: k_past, side of the spatial window in each past frame (odd). Paper default 3.
        grid: g, each frame is cut into g×g regions for coverage quotas. Paper default 4.
        rho: ρ, spatial preservation ratio in k_region = max(1, floor(B_f·ρ/g²)). The paper gives
            no default; we use 0.5: half of each frame's budget is spread over the grid cells for
            coverage, the other half goes to the best remaining scores, so neither coverage nor
            saliency dominates. ρ = 1 is pure stratified sampling, ρ = 0 keeps one token per cell.
        q: fraction of a frame's best tokens whose mean is the frame saliency S̄_f. Paper default 0.3.
        tau_alloc: τ_alloc, temperature of the frame-budget softmax (Eq. 4). The paper gives no
            default; we use 0.1 because S̄_f lives in [0, 1] and frames of one clip typically differ
            by a few hundredths: τ_alloc = 1 would give near-uniform budgets, while 0.1 gives a frame
            that is 0.1 more salient e≈2.7× the weight, which makes allocation visible but bounded.
        min_tokens: B_min, floor of every frame budget. Paper default 4. When K < T·B_min the floor
            becomes floor(K/T) and the remainder goes to the highest-weight frames.
        max_tokens: B_max, ceiling of every frame budget; None means the whole frame (H·W).
        grid_fusion: when True, each grid cell's discarded tokens are merged into one token
            (score-weighted mean, anchored at the cell's best discarded position); these fused
            tokens take the place of the lowest-priority picks, so the output still has K rows.
    """

    alpha: float = 0.5
    tau: float = 1.0
    window: int = 5
    temporal_window: int = 3
    past_window: int = 3
    grid: int = 4
    rho: float = 0.5
    q: float = 0.3
    tau_alloc: float = 0.1
    min_tokens: int = 4
    max_tokens: int | None = None
    grid_fusion: bool = False

    def __post_init__(self) -> None:
        _real_field("alpha", self.alpha, 0.0, 1.0, low_open=False)
        _real_field("tau", self.tau, MIN_TEMPERATURE, math.inf, low_open=False)
        if math.isinf(float(self.tau)):
            raise SelectorError(f"tau must be finite, got {self.tau}")
        _int_field("window", self.window, 1, odd=True)
        _int_field("temporal_window", self.temporal_window, 1)
        _int_field("past_window", self.past_window, 1, odd=True)
        _int_field("grid", self.grid, 1)
        _real_field("rho", self.rho, 0.0, 1.0, low_open=False)
        _real_field("q", self.q, 0.0, 1.0, low_open=True)
        _real_field("tau_alloc", self.tau_alloc, MIN_TEMPERATURE, math.inf, low_open=False)
        if math.isinf(float(self.tau_alloc)):
            raise SelectorError(f"tau_alloc must be finite, got {self.tau_alloc}")
        _int_field("min_tokens", self.min_tokens, 0)
        if self.max_tokens is not None:
            _int_field("max_tokens", self.max_tokens, 1)
            if self.max_tokens < self.min_tokens:
                raise SelectorError(
                    f"max_tokens ({self.max_tokens}) must be >= min_tokens ({self.min_tokens})"
                )
        if not isinstance(self.grid_fusion, bool):
            raise SelectorError(f"grid_fusion must be a bool, got {self.grid_fusion!r}")

    def neighbourhood_size(self) -> int:
        """|N| of Eq. (1) away from borders: (k²-1) + (K_t-1)·k_past².

        >>> SelectorConfig().neighbourhood_size()
        42
        """
        return (self.window**2 - 1) + (self.temporal_window - 1) * self.past_window**2
