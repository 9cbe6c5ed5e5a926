"""Other token-compression methods beside ENTROPY-SELECT, at the same budget, and what a compression loses.

`compress(name, tokens, retention, **options)` runs any method of `METHODS` on a (T, H, W, D) grid and returns a
`Compression` of exactly K = max(1, floor(r·T·H·W)) rows (the K of `select_tokens`); `coverage` measures how well
the K rows stand for all T·H·W tokens. Coverage is a proxy for what a VLM could still see, not accuracy.
Imports torch only; `python -m selector.compare` is the command line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import SelectorError
from ..method.pipeline import check_finite, num_kept
from . import methods
from .methods import Method

__all__ = ["METHODS", "Method", "Compression", "compress", "coverage", "coverage_report", "result_row",
           "DEFAULT_METHODS", "parse_methods", "rows_for", "frame_rows"]


@dataclass(frozen=True)
class Compression:
    """K rows standing for a (T, H, W, D) grid.

    tokens: (K, D) rows; positions: (K,) strictly ascending flat indices t·H·W + h·W + w (a kept token's own index,
    a merged row's anchor); merged: (K,) bool, True where the row is not an input token; method: its name;
    timings_ms: wall time, with `total`; grid: (T, H, W)."""

    tokens: torch.Tensor
    positions: torch.Tensor
    merged: torch.Tensor
    method: str
    grid: tuple[int, int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return int(self.positions.numel())


METHODS: dict[str, Method] = {m.name: m for m in methods.ALL}
#: the methods the app's Compare tab picks by default
DEFAULT_METHODS = ("entropy_select", "random", "uniform_pool", "vidcom2", "fastvid")


def _check(name: object, tokens: object, retention: object) -> tuple[Method, int]:
    if not isinstance(name, str) or name not in METHODS:
        raise SelectorError(f"unknown method {name!r}; the methods are {', '.join(METHODS)}")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 4 or min(tokens.shape) == 0:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise SelectorError(f"tokens must be a non-empty (T, H, W, D) tensor, got {shape}")
    if not tokens.is_floating_point():
        raise SelectorError(f"tokens must be a float tensor, got {tokens.dtype}")
    check_finite(tokens)  # names NaN/Inf values
    if isinstance(retention, bool) or not isinstance(retention, (int, float)) or not 0.0 < float(retention) <= 1.0:
        raise SelectorError(f"retention must be in (0, 1], got {retention!r}")
    t_, h_, w_, _ = tokens.shape
    return METHODS[name], num_kept(float(retention), t_ * h_ * w_)


def compress(name: str, tokens: torch.Tensor, retention: float, **options: Any) -> Compression:
    """Run method `name` at `retention` on a (T, H, W, D) grid (CPU or GPU, on the tokens' device).

    >>> x = torch.randn(4, 6, 6, 8, generator=torch.Generator().manual_seed(0))
    >>> c = compress("uniform_pool", x, 0.25)
    >>> c.num_tokens, bool((c.positions[1:] > c.positions[:-1]).all())
    (36, True)
    """
    method, k = _check(name, tokens, retention)
    unknown = sorted(set(options) - set(method.options))
    if unknown:
        raise SelectorError(f"{name} takes no option {', '.join(unknown)}"
                            + (f" (its options: {', '.join(method.options)})" if method.options else ""))
    sync = torch.cuda.synchronize if tokens.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    rows, positions, merged = method.run(tokens, k, **options)
    sync()
    ms = (time.perf_counter() - t0) * 1e3
    order = torch.argsort(positions)
    rows, positions, merged = rows[order], positions[order], merged[order]
    if positions.numel() != k or (positions.numel() > 1 and not bool((positions[1:] > positions[:-1]).all())):
        raise AssertionError(f"{name} returned {positions.numel()} rows for K = {k}, or repeated positions")
    t_, h_, w_, _ = tokens.shape
    return Compression(rows, positions, merged, name, (t_, h_, w_), {"total": ms})


def _best_similarity(tokens: torch.Tensor, rows: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For every token (N, D), the highest cosine similarity to any of `rows` (K, D); (N,) float32."""
    x = torch.nn.functional.normalize(tokens.reshape(-1, tokens.shape[-1]).float(), dim=-1)
    r = torch.nn.functional.normalize(rows.float(), dim=-1)
    out = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for i in range(0, x.shape[0], chunk):
        out[i:i + chunk] = (x[i:i + chunk] @ r.T).amax(dim=1)
    return out


def coverage(tokens: torch.Tensor, compression: Compression) -> float:
    """Mean over all T·H·W tokens of the highest cosine similarity to any of the K rows (1.0 when nothing is
    dropped). A proxy for what the rows still represent, not a measure of answer accuracy."""
    return float(_best_similarity(tokens, compression.tokens).mean())


def coverage_report(tokens: torch.Tensor, compression: Compression, grid: int = 4) -> dict[str, Any]:
    """coverage, its per-frame means, the share of frames that keep at least one row and the share of g×g cells
    per frame (averaged over frames) that keep at least one row."""
    t_, h_, w_, _ = tokens.shape
    best = _best_similarity(tokens, compression.tokens).reshape(t_, h_ * w_)
    pos = compression.positions.to(tokens.device)
    frame = pos // (h_ * w_)
    rc = pos % (h_ * w_)
    cell = (rc // w_ * grid // h_) * grid + (rc % w_ * grid // w_)
    has = torch.zeros(t_, grid * grid, dtype=torch.bool, device=tokens.device)
    has[frame, cell] = True
    rows_cells = torch.arange(h_, device=tokens.device) * grid // h_
    cols_cells = torch.arange(w_, device=tokens.device) * grid // w_
    real = torch.zeros(grid * grid, dtype=torch.bool, device=tokens.device)  # cells that hold tokens
    real[(rows_cells[:, None] * grid + cols_cells[None, :]).reshape(-1)] = True
    frames_kept = torch.zeros(t_, dtype=torch.bool, device=tokens.device)
    frames_kept[frame] = True
    return {"coverage": float(best.mean()), "coverage_per_frame": [round(float(v), 5) for v in best.mean(1)],
            "frames_covered": float(frames_kept.float().mean()),
            "cells_covered": float((has[:, real].float().mean(1)).mean())}


def frame_rows(compression: Compression) -> list[int]:
    """Rows the compression keeps in each frame, a merged row counted at its anchor's frame: ENTROPY-SELECT's frame
    budgets b_t, and the same count for every other method.

    >>> c = compress("frame_sample", torch.randn(4, 3, 3, 8), 0.5)
    >>> frame_rows(c)  # two whole frames of 3×3, uniformly spaced
    [0, 9, 0, 9]
    """
    t_, h_, w_ = compression.grid
    frames = torch.div(compression.positions, h_ * w_, rounding_mode="floor")
    return torch.bincount(frames.cpu(), minlength=t_).tolist()


def result_row(tokens: torch.Tensor, compression: Compression) -> dict[str, Any]:
    """What the CLI, the /compare endpoint and the app's table report of one compression of `tokens` (with
    `frame_rows`: the rows kept in each frame)."""
    rep = coverage_report(tokens, compression)
    return {"method": compression.method, "tokens_kept": compression.num_tokens,
            "merged": int(compression.merged.sum()), "coverage": round(rep["coverage"], 5),
            "frames_covered": round(rep["frames_covered"], 4), "cells_covered": round(rep["cells_covered"], 4),
            "ms": round(compression.timings_ms["total"], 2), "frame_rows": frame_rows(compression)}


def rows_for(tokens, methods: list[str], retentions: list[float], progress=None) -> list[dict]:
    """One result row per (method, retention) on a (T, H, W, D) grid."""
    out = []
    for i, r in enumerate(retentions):
        for j, name in enumerate(methods):
            if progress:
                progress((i * len(methods) + j) / (len(methods) * len(retentions)), f"{name} at r = {r:g}")
            out.append({"retention": r, **result_row(tokens, compress(name, tokens, r))})
    return out


def parse_methods(text: str) -> list[str]:
    """Method names from a comma-separated list; ValueError names unknown ones (and an empty list)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if not names or unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; the methods are "
                         f"{', '.join(METHODS)}")
    return names
