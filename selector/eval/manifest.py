"""What the `lmms_eval.models` entry point gives lmms-eval: the two models' names and class paths (nothing
heavy is imported until lmms-eval loads a model by its name)."""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFESTS = [
    ModelManifest(model_id="entropy_select_llava_onevision",
                  chat_class_path="selector.eval.models.EntropySelectLlavaOneVision"),
    ModelManifest(model_id="entropy_select_qwen2_5_vl",
                  chat_class_path="selector.eval.models.EntropySelectQwen25VL"),
]
