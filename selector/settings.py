"""Every ENTROPY_SELECT_* environment variable, read by one object (`Settings`), once, when first asked for.

`current()` is the process's settings (read at the first call, not at import); `reload()` reads the environment
again (after a test or a launcher changed it). Modules ask `current()` when they need a value, so nothing is
frozen at import. `VARIABLES` lists every variable with its default and meaning (docs/architecture.md prints it).
Imports the stdlib (and `config`) only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .config import SelectorError

__all__ = ["Settings", "SettingsError", "current", "reload", "model_key", "module_settings", "VARIABLES", "PREFIX"]

PREFIX = "ENTROPY_SELECT_"


class SettingsError(SelectorError):
    """An ENTROPY_SELECT_* variable holds a value its setting does not take."""


def model_key(name: str) -> str:
    """How an allowlist entry and a requested model are compared: a folder that exists by its real path (a trailing
    slash, `./`, `~` or a link do not matter), anything else (a hub id) as written, without trailing slashes."""
    name = name.strip()
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return os.path.realpath(path)
    return name.rstrip("/") or name


def _int(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < lo:
            raise ValueError
        return value

    parse.__doc__ = f"an int >= {lo}"
    return parse


def _float(text: str) -> float:
    """a number > 0"""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _flag(text: str) -> bool:
    """1 or 0"""
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _text(text: str) -> str:
    """a non-empty text"""
    if not text.strip():
        raise ValueError
    return text.strip()


def _optional_int(text: str) -> int | None:
    """an int >= 1, or empty"""
    return _int(1)(text) if text.strip() else None


def _optional_text(text: str) -> str | None:
    """a path, or empty"""
    return text.strip() or None


def _models(text: str) -> frozenset[str]:
    """comma-separated ids or folders"""
    return frozenset(model_key(m) for m in text.split(",") if m.strip())


def _precision(text: str) -> str:
    """auto, fp32 or bf16"""
    low = text.strip().lower() or "auto"
    if low not in ("auto", "fp32", "bf16"):
        raise ValueError
    return low


def _prefill(text: str) -> str:
    """auto, graph, compiled or eager"""
    low = text.strip().lower() or "auto"
    if low not in ("auto", "graph", "compiled", "eager"):
        raise ValueError
    return low


def _var(suffix: str, default: Any, parse: Callable[[str], Any], meaning: str, env_default: str | None = None) -> Any:
    """A setting read from ENTROPY_SELECT_<suffix>; env_default: the value when the variable is unset, where it
    differs from the default of a Settings made in code."""
    meta = {"env": PREFIX + suffix, "parse": parse, "meaning": meaning, "env_default": env_default}
    if isinstance(default, (frozenset, list, dict, set)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """The environment's settings; a Settings made in code holds the defaults (the web app's warm-up off)."""

    encoder: str = _var("ENCODER", "dinov2-s", _text, "default image encoder (app, CLI, Python API)")
    encoder_precision: str = _var("ENCODER_PRECISION", "auto", _precision,
                                  "offline encoders on a CPU: auto (bf16 where the CPU has bf16 instructions), fp32 "
                                  "or bf16")
    vlm: str = _var("VLM", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", _text,
                    "default VLM of the Ask tab and load_vlm()")
    prefill: str = _var("PREFILL", "auto", _prefill, "LLM prefill of load_vlm(): graph, compiled, eager or auto")
    max_frames: int = _var("MAX_FRAMES", 64, _int(1), "frames a request may sample (the slider's maximum)")
    max_upload: str = _var("MAX_UPLOAD", "200mb", _text, "largest upload the web app takes (gradio's max_file_size)")
    max_side: int = _var("MAX_SIDE", 1024, _int(16), "frames are downscaled on read above this side (pixels)")
    max_pixels: int = _var("MAX_PIXELS", 4096 * 4096, _int(1), "videos with larger frames are refused (pixels)")
    max_decoded_frames: int = _var("MAX_DECODED_FRAMES", 20000, _int(1),
                                   "frames read from a stream without an index")
    max_decodes: int = _var("MAX_DECODES", 2, _int(1), "videos decoded at once in one process")
    time_limit: float = _var("TIME_LIMIT", 300.0, _float, "seconds one compute request of the web app may run")
    queue: int = _var("QUEUE", 32, _int(1), "requests the web app lets wait")
    concurrency: int = _var("CONCURRENCY", 2, _int(1), "compute requests the web app runs at once")
    cache_mb: float = _var("CACHE_MB", 1024.0, _float, "bound of the web app's feature cache (MiB)")
    output_ttl: float = _var("OUTPUT_TTL", 900.0, _float,
                             "seconds the web app keeps the views and downloads it hands out (gradio's copies and "
                             "uploads: 4× as long, swept every 2×)")
    cache: str | None = _var("CACHE", None, _optional_text,
                             "folder of converted encoder weights (else $XDG_CACHE_HOME or ~/.cache, entropy-select)")
    extra_models: frozenset[str] = _var("MODEL_ALLOWLIST", frozenset(), _models,
                                        "extra encoder/VLM ids or folders a public server may load")
    allow_any_model: bool = _var("ALLOW_ANY_MODEL", False, _flag, "1: the web app loads any id or folder asked for")
    warm: bool = _var("WARM", False, _flag,
                      "prepare the examples' views in the background at start (off on ZeroGPU)", env_default="1")
    eval_data: str | None = _var("EVAL_DATA", None, _optional_text,
                                 "where the lmms-eval synthetic task writes its clips (else the cache folder)")
    triton: bool = _var("TRITON", True, _flag, "0: the fused GPU kernels off (the banded torch path instead)")
    strip_cols: int | None = _var("STRIP_COLS", None, _optional_int,
                                  "query columns per strip of the CPU entropy (empty: timed at a grid's first call)")
    malloc_tuning: bool = _var("MALLOC_TUNING", True, _flag, "0: glibc malloc thresholds and huge pages untouched")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from env (default os.environ); a variable that is set but refused raises SettingsError."""
        e = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name, parse = f.metadata["env"], f.metadata["parse"]
            raw = e.get(name)
            if raw is None:
                raw = f.metadata["env_default"]
                if raw is None:
                    continue
            try:
                values[f.name] = parse(raw)
            except ValueError:
                raise SettingsError(f"{name} must be {parse.__doc__}, got {raw!r}") from None
        if values.get("warm") and (e.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true")):
            values["warm"] = False  # a ZeroGPU Space lends the GPU per request: no warm-up outside one
        return cls(**values)


def _default_text(f: Any) -> str:
    if f.metadata["env_default"] is not None:
        return f.metadata["env_default"]
    if f.default is None or f.default is MISSING:  # None, or a collection made by a factory (empty)
        return ""
    if isinstance(f.default, bool):
        return "1" if f.default else "0"
    return str(f.default)


#: (variable, default as text, meaning) of every setting, in the order of Settings' fields
VARIABLES: tuple[tuple[str, str, str], ...] = tuple(
    (f.metadata["env"], _default_text(f), f.metadata["meaning"]) for f in fields(Settings))

_lock = threading.Lock()
_current: Settings | None = None


def current() -> Settings:
    """The process's settings, read from the environment at the first call."""
    got = _current
    return got if got is not None else reload()


def reload(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings again (from env, default os.environ) and make them the process's."""
    global _current
    fresh = Settings.from_env(env)
    with _lock:
        _current = fresh
    return fresh


def module_settings(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module's `__getattr__` that reads `names` (module attribute → Settings field, e.g. video.MAX_SIDE →
    max_side) from the current settings: names that look like constants follow the settings instead of being frozen
    at import."""
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(current(), names[name])
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
