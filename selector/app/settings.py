"""The web app's settings: the process's `selector.settings.Settings` (every ENTROPY_SELECT_* variable). No gradio."""

from __future__ import annotations

from ..settings import Settings, current, model_key

__all__ = ["Settings", "current", "model_key"]
