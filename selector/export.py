"""Selections to files: NPZ (arrays) and JSON (summary + arrays as lists). No pickles."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .core import Selection

__all__ = ["to_npz", "to_json", "selection_arrays"]


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
    meta = json.dumps({**sel.summary(), **(extra or {})})
    arrays: dict[str, Any] = {**selection_arrays(sel), "summary": np.array(meta)}
    np.savez_compressed(path, **arrays)


def to_json(sel: Selection, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> None:
    arrays = {k: v.round(5).tolist() if v.dtype.kind == "f" else v.tolist() for k, v in selection_arrays(sel).items()}
    with open(path, "w") as f:
        json.dump({**sel.summary(), **(extra or {}), **arrays}, f)
