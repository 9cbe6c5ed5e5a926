from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "bigbuckbunny.mp4"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of a system tool; in CI its absence fails the test (.ci/run installs it), locally it skips."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is missing; .ci/run installs it with apt-get")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    # converted weights go to a per-run folder unless the user's cache is asked for
    if "ENTROPY_SELECT_CACHE" not in os.environ:
        os.environ["ENTROPY_SELECT_CACHE"] = str(tmp_path_factory.mktemp("weights"))
    yield


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE
