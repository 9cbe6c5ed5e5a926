"""What the `lmms_eval.models` entry point gives lmms-eval: the two models' names and class paths. A function, so
that importing this module imports nothing of lmms-eval (lmms-eval calls it while its model registry is being
built), and nothing heavy is imported until lmms-eval loads a model by its name."""

from __future__ import annotations

from typing import Any

MODELS = {"entropy_select_llava_onevision": "selector.eval.models.EntropySelectLlavaOneVision",
          "entropy_select_qwen2_5_vl": "selector.eval.models.EntropySelectQwen25VL"}


def manifests() -> list[Any]:
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=name, chat_class_path=path) for name, path in MODELS.items()]
