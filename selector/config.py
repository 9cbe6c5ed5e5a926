"""The selector's knobs, each declared once, and its one error type (imports nothing but the stdlib).

Every knob is a field of `SelectorConfig` made with `knob(...)`: its default, the values it accepts, and how a
person sets it (range and step of its slider or field, label, help). The app's sliders and fields, the /analyze
and /ask parameters, the CLI flags and the service's parameters are all generated from `knobs()`, so adding a
knob is one field here and its use in the method.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SelectorConfig", "SelectorError", "Knob", "knob", "knobs", "config_from", "MIN_TEMPERATURE"]

#: smallest τ and τ_alloc: below it 1/τ takes float32 past its range (1e-40 gives NaN maps) and long before that
#: every neighbour distribution is one-hot (Ĥ = 0 everywhere at τ = 1e-6 already)
MIN_TEMPERATURE = 1e-6
#: largest int knob: a frame never holds that many tokens, and JSON writers (and numpy's int64) stop near it
MAX_INT = 2**31 - 1


class SelectorError(ValueError):
    """Bad input to the selector; the message names the value and the shape that failed."""


@dataclass(frozen=True)
class Knob:
    """One selector knob: what it accepts and how a person sets it.

    kind: "float", "int" or "bool"; low/high: accepted range (low excluded when low_open); odd: odd ints only;
    optional: None is accepted and means "no limit" (shown as 0 in the app and the CLI). ui: "slider",
    "number" or "checkbox"; ui_low/ui_high/step: the slider's range; log: the slider moves log10 of the value;
    section: where the app shows it ("main": always visible, "more": the windows accordion; number fields go to the
    frame-budgets accordion)."""

    name: str
    default: Any
    kind: str
    label: str
    help: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    odd: bool = False
    optional: bool = False
    ui: str = "slider"
    ui_low: float | None = None
    ui_high: float | None = None
    step: float | None = None
    log: bool = False
    section: str = "more"

    def parse(self, value: object) -> Any:
        """A value as a page, a client, the command line or a harness sends it, in this knob's type: whole numbers
        for ints (2.0 is 2), numbers for floats, bools for bools; 0 or None for an optional knob means "no limit"
        (None). The one place where user input becomes a knob value: SelectorError names a refused one (the range
        is checked by `check`, when the config is built).

        >>> knobs()[-3].parse(0), knobs()[0].parse(1)
        (None, 1.0)
        """
        if self.optional and (value is None or (not isinstance(value, bool) and value == 0)):
            return None
        if self.kind == "bool":
            if not isinstance(value, (bool, int)) or isinstance(value, float):
                raise SelectorError(f"{self.name} must be true or false, got {value!r}")
            return bool(value)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SelectorError(f"{self.name} must be a {'whole ' if self.kind == 'int' else ''}number, got {value!r}")
        if self.kind == "int":
            if not math.isfinite(value) or value != int(value):
                raise SelectorError(f"{self.name} must be a whole number, got {value!r}")
            if abs(value) > MAX_INT:
                raise SelectorError(f"{self.name} must be <= {MAX_INT:,}, got {value:.4g}")
            return int(value)
        if not math.isfinite(value):
            raise SelectorError(f"{self.name} must be a finite number, got {value!r}")
        return float(value)

    def check(self, value: object) -> None:
        """Raise SelectorError naming this knob when `value` is not one it accepts."""
        if value is None and self.optional:
            return
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise SelectorError(f"{self.name} must be a bool, got {value!r}")
            return
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise SelectorError(f"{self.name} must be an int, got {value!r} ({type(value).__name__})")
            if value < self.low:
                raise SelectorError(f"{self.name} must be >= {int(self.low)}, got {value}")
            if value > min(self.high, MAX_INT):
                raise SelectorError(f"{self.name} must be <= {int(min(self.high, MAX_INT)):,}, got {value:.4g}")
            if self.odd and value % 2 == 0:
                raise SelectorError(f"{self.name} must be odd so the window has a centre token, got {value} "
                                    f"({self.label.removesuffix(' (odd)')})")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SelectorError(f"{self.name} must be a real number, got {value!r} ({type(value).__name__})")
        v = float(value)
        bad_low = v <= self.low if self.low_open else v < self.low
        if math.isnan(v) or bad_low or v > self.high:
            bracket = "(" if self.low_open else "["
            raise SelectorError(f"{self.name} must be in {bracket}{self.low}, {self.high}], got {value}")
        if math.isinf(v):
            raise SelectorError(f"{self.name} must be finite, got {value}")


def knob(default: Any, kind: str, label: str, help: str, **spec: Any) -> Any:
    """A SelectorConfig field declared as a knob (see Knob for `spec`)."""
    return dataclasses.field(default=default, metadata={"knob": {"kind": kind, "label": label, "help": help,
                                                                  **spec}})


def config_from(values: dict[str, Any], cls: type | None = None) -> Any:
    """A SelectorConfig (or `cls`) from raw values by knob name (each through `Knob.parse`; a knob left out keeps
    its default); SelectorError names an unknown name or a refused value.

    >>> config_from({"tau": 0.05, "max_tokens": 0, "window": 3.0}).window
    3
    """
    cls = SelectorConfig if cls is None else cls
    table = {k.name: k for k in knobs(cls)}
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise SelectorError(f"unknown knob(s) {', '.join(unknown)}; the knobs are {', '.join(table)}")
    return cls(**{n: table[n].parse(v) for n, v in values.items()})


def knobs(cls: type | None = None) -> tuple[Knob, ...]:
    """The knobs of a SelectorConfig class (or subclass), in field order."""
    cls = SelectorConfig if cls is None else cls
    return tuple(Knob(name=f.name, default=f.default, **f.metadata["knob"])
                 for f in dataclasses.fields(cls) if "knob" in f.metadata)


@dataclass(frozen=True)
class SelectorConfig:
    """Knobs of ENTROPY-SELECT with the paper's names and defaults (Sec. 3, Tables 5, 6, 8); each field's `help`
    says what it does. Choices where the paper is silent: ρ = 0.5 (half of each frame's budget spread over the
    grid cells for coverage, the other half to the best remaining scores), τ_alloc = 0.1 (S̄_f lies in [0, 1]
    and frames of one clip differ by a few hundredths: τ_alloc = 1 would give near-uniform budgets, 0.1 gives a
    frame that is 0.1 more salient e ≈ 2.7× the weight). With cosine similarities in [-1, 1], τ = 1 gives
    near-uniform neighbour distributions (Ĥ close to 1 almost everywhere); τ ≈ 0.05 makes the map informative.
    """

    alpha: float = knob(0.5, "float", "α: weight of entropy vs gradient",
                        "α, weight of the normalized entropy in S = α·Ĥ + (1-α)·Ĝ (paper: 0.5)",
                        low=0.0, high=1.0, step=0.05, section="main")
    tau: float = knob(1.0, "float", "log₁₀ τ (τ from 0.01 to 5; 0 → τ = 1)",
                      "τ, temperature of the neighbour softmax, Eq. 2 (paper: 1.0)",
                      low=MIN_TEMPERATURE, ui_low=0.01, ui_high=5.0, step=0.05, log=True, section="main")
    window: int = knob(5, "int", "Spatial window k (odd)", "k, side of the spatial window in the current frame",
                       low=1, odd=True, ui_low=3, ui_high=9, step=2)
    temporal_window: int = knob(3, "int", "Temporal window K_t (past frames + 1)",
                                "K_t, frames in the neighbourhood: the current one and K_t-1 past ones (1: spatial "
                                "only)", low=1, ui_low=1, ui_high=4, step=1)
    past_window: int = knob(3, "int", "Past-frame window k_past (odd)",
                            "k_past, side of the spatial window in each past frame", low=1, odd=True, ui_low=1,
                            ui_high=5, step=2)
    grid: int = knob(4, "int", "Grid g (g×g coverage cells)", "g, each frame is cut into g×g cells for coverage "
                     "quotas", low=1, ui_low=1, ui_high=8, step=1)
    rho: float = knob(0.5, "float", "ρ: share of each budget spread over cells",
                      "ρ, spatial preservation ratio in k_region = max(1, floor(B_f·ρ/g²))", low=0.0, high=1.0,
                      step=0.05)
    q: float = knob(0.3, "float", "q: share of a frame's best tokens in its saliency S̄_f",
                    "q, fraction of a frame's best tokens whose mean score is the frame saliency (paper: 0.3)",
                    low=0.0, high=1.0, low_open=True, ui="number")
    tau_alloc: float = knob(0.1, "float", "τ_alloc: temperature of the budget softmax",
                            "τ_alloc, temperature of the frame-budget softmax, Eq. 4", low=MIN_TEMPERATURE,
                            ui="number")
    min_tokens: int = knob(4, "int", "B_min: tokens every frame keeps",
                           "B_min, floor of every frame budget (when K < T·B_min it becomes floor(K/T))", low=0,
                           ui="number")
    max_tokens: int | None = knob(None, "int", "B_max: most tokens a frame keeps (0: no cap)",
                                  "B_max, ceiling of every frame budget; None (0 in the app and CLI): the whole "
                                  "frame", low=1, optional=True, ui="number")
    invert_entropy: bool = knob(False, "bool", "Invert Ĥ in the score (S = α·(1-Ĥ) + (1-α)·Ĝ)",
                                "score low local entropy high instead of high (not the paper: a variant to compare; "
                                "at small τ low Ĥ marks object boundaries, high Ĥ flat regions)", ui="checkbox")
    grid_fusion: bool = knob(False, "bool", "Grid fusion (merge each cell's dropped tokens)",
                             "merge each grid cell's dropped tokens into one token (score-weighted mean at the "
                             "cell's best dropped position), in place of the lowest-priority picks", ui="checkbox")

    def __post_init__(self) -> None:
        for k in knobs(type(self)):
            k.check(getattr(self, k.name))
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise SelectorError(f"max_tokens ({self.max_tokens}) must be >= min_tokens ({self.min_tokens})")

    def neighbourhood_size(self) -> int:
        """|N| of Eq. (1) away from borders: (k²-1) + (K_t-1)·k_past².

        >>> SelectorConfig().neighbourhood_size()
        42
        """
        return (self.window**2 - 1) + (self.temporal_window - 1) * self.past_window**2
