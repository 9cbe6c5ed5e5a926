"""Can a Hugging Face hub id be loaded here, now? Answered in a few seconds at most, so that an offline machine
refuses a hub encoder or model at once with one clear message instead of waiting on network retries.

An id is available when it names a local folder, when its config is already in the local hub cache, or when the
hub is reachable (not HF_HUB_OFFLINE, and a TCP connection to the hub's host opens within PROBE_SECONDS; the
answer is kept for RECHECK_SECONDS).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["available", "reachable", "unavailable_message", "PROBE_SECONDS"]

PROBE_SECONDS = 3.0
RECHECK_SECONDS = 60.0
_state: dict[str, tuple[float, bool]] = {}
_lock = threading.Lock()


def _offline_env() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def reachable() -> bool:
    """Whether the hub can be reached now (False at once under HF_HUB_OFFLINE=1)."""
    if _offline_env():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    with _lock:
        seen = _state.get(endpoint)
        if seen and time.monotonic() - seen[0] < RECHECK_SECONDS:
            return seen[1]
    result: list[bool] = []

    def probe() -> None:  # name resolution has no timeout of its own: the probe runs aside and is waited for
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(PROBE_SECONDS)
    ok = bool(result and result[0])
    with _lock:
        _state[endpoint] = (time.monotonic(), ok)
    return ok


def _cached(ident: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(ident, "config.json"), str)
    except Exception:  # an id the hub library refuses (bad characters): not in the cache
        return False


def available(ident: str) -> bool:
    """A local folder, an id in the local hub cache, or any id while the hub is reachable."""
    return Path(ident).expanduser().is_dir() or _cached(ident) or reachable()


def unavailable_message(ident: str, what: str = "model") -> str:
    """One message: what is missing and the ways to provide it."""
    return (f"The {what} '{ident}' comes from the Hugging Face hub, which this machine cannot reach now "
            f"({'HF_HUB_OFFLINE is set' if _offline_env() else 'no connection'}), and it is not in the local "
            f"cache. To use it: run where the hub is reachable (e.g. a Hugging Face Space), or download it "
            f"elsewhere (huggingface-cli download {ident} --local-dir DIR), copy DIR to this machine and give DIR "
            f"as the {what}.")
