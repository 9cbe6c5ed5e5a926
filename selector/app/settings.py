"""The web app's settings, read once from the environment into one object. No gradio."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["Settings", "model_key"]


def model_key(name: str) -> str:
    """How an allowlist entry and a requested model are compared: a folder that exists by its real path (a trailing
    slash, `./`, `~` or a link do not matter), anything else (a hub id) as written, without trailing slashes."""
    name = name.strip()
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return os.path.realpath(path)
    return name.rstrip("/") or name


@dataclass(frozen=True)
class Settings:
    """ENTROPY_SELECT_MAX_UPLOAD (e.g. "200mb"), _QUEUE (requests waiting), _CONCURRENCY (compute requests at
    once), _TIME_LIMIT (seconds per compute request, enforced between steps), _MODEL_ALLOWLIST (comma-separated
    extra encoder/model ids or folders a public server may load), _ALLOW_ANY_MODEL=1 (no allowlist), _WARM=0 (do not
    compute the example's views in the background at start-up)."""

    max_upload: str = "200mb"
    queue: int = 32
    concurrency: int = 2
    time_limit: float = 300.0
    allow_any_model: bool = False
    extra_models: frozenset[str] = field(default_factory=frozenset)
    warm: bool = False  # the app (from_env) warms by default; settings made in code do not

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        return cls(max_upload=e.get("ENTROPY_SELECT_MAX_UPLOAD", "200mb"),
                   queue=int(e.get("ENTROPY_SELECT_QUEUE", "32")),
                   concurrency=int(e.get("ENTROPY_SELECT_CONCURRENCY", "2")),
                   time_limit=float(e.get("ENTROPY_SELECT_TIME_LIMIT", "300")),
                   allow_any_model=e.get("ENTROPY_SELECT_ALLOW_ANY_MODEL", "") == "1",
                   extra_models=frozenset(model_key(m) for m in e.get("ENTROPY_SELECT_MODEL_ALLOWLIST", "").split(",")
                                          if m.strip()),
                   # a ZeroGPU Space lends the GPU per request: no warm-up outside one
                   warm=e.get("ENTROPY_SELECT_WARM", "1") != "0"
                   and e.get("SPACES_ZERO_GPU", "").lower() not in ("1", "true"))
