"""What the `lmms_eval.models` entry point gives lmms-eval: one model per VLM family of `selector.vlm.FAMILIES`
(`entropy_select_<model_type>`), by name and class path. A function, so that importing this module imports nothing
of lmms-eval (lmms-eval calls it while its model registry is being built); the families' registry imports torch,
which lmms-eval has imported by then."""

from __future__ import annotations

from typing import Any


def models() -> dict[str, str]:
    """lmms-eval model name → class path, one per family."""
    from ..vlm import FAMILIES

    return {f"entropy_select_{t}": f"selector.eval.models.{f.eval_class}" for t, f in FAMILIES.items()}


def manifests() -> list[Any]:
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=name, chat_class_path=path) for name, path in models().items()]
