"""ENTROPY-SELECT in lmms-eval (``pip install ".[eval]"``).

- models `entropy_select_llava_onevision` and `entropy_select_qwen2_5_vl` (`selector.eval.models`), registered
  through the `lmms_eval.models` entry point;
- the offline task `entropy_select_synthetic` (`selector.eval.synthetic`, `selector.eval.task`) in the folder
  `TASKS_PATH`, for ``--include_path``; ``python -m selector.eval tasks-path`` prints it.

This package imports lmms-eval only in its `models`, `task` and `manifest` modules.
"""

from pathlib import Path

TASKS_PATH = Path(__file__).resolve().parent / "tasks"

__all__ = ["TASKS_PATH"]
