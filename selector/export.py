"""Selections to files: NPZ (arrays) and JSON (summary + arrays as lists). No pickles; JSON is strict (a value
that is not finite is written as null, never as a bare NaN or Infinity)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from .method.pipeline import Selection

__all__ = ["to_npz", "to_json", "selection_arrays", "strict_json", "finite"]


def finite(v: Any) -> Any:
    """v with every float that is not finite replaced by None, through dicts, lists and tuples."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(x) for x in v]
    return v


def strict_json(v: Any) -> str:
    """JSON text of v that any parser accepts (see `finite`)."""
    return json.dumps(finite(v), allow_nan=False)


def selection_arrays(sel: Selection) -> dict[str, np.ndarray]:
    return {
        "indices": sel.indices.cpu().numpy(),
        "budgets": sel.budgets.cpu().numpy(),
        "keep": sel.keep.cpu().numpy(),
        "fused": sel.fused.cpu().numpy(),
        "entropy": sel.entropy.cpu().numpy(),
        "gradient": sel.gradient.cpu().numpy(),
        "score": sel.score.cpu().numpy(),
        "frame_saliency": sel.frame_saliency.cpu().numpy(),
        "frame_weights": sel.frame_weights.cpu().numpy(),
    }


def to_npz(sel: Selection, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
    meta = strict_json({**sel.summary(), **(extra or {})})
    arrays: dict[str, Any] = {**selection_arrays(sel), "summary": np.array(meta)}
    np.savez_compressed(path, **arrays)


def to_json(sel: Selection, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
    arrays = {k: v.round(5).tolist() if v.dtype.kind == "f" else v.tolist() for k, v in selection_arrays(sel).items()}
    text = strict_json({**sel.summary(), **(extra or {}), **arrays})
    with open(path, "w") as f:
        f.write(text)
