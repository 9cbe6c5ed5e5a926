from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "bigbuckbunny.mp4"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the hub
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# One scratch folder for every temporary file of the run (this process, the app's downloads, gradio's cache,
# gradio_client's per-download folders, subprocesses through TMPDIR): gradio_client leaves an empty folder in
# the temp dir per downloaded file, ~160 a run. Removed when the run passes, kept (and named) when it fails.
# A short path: chromium's socket under it must stay within the 108 bytes of a Unix socket path. Test modules
# import this file a second time (`from conftest import ...`): the folder is made once.
if "ENTROPY_SELECT_TEST_TMP" not in os.environ:
    os.environ["ENTROPY_SELECT_TEST_TMP"] = tempfile.mkdtemp(prefix="es-tests-")
SCRATCH = Path(os.environ["ENTROPY_SELECT_TEST_TMP"])
os.environ["TMPDIR"] = tempfile.tempdir = str(SCRATCH)
os.environ["GRADIO_TEMP_DIR"] = str(SCRATCH / "gradio")
os.environ.setdefault("ENTROPY_SELECT_WARM", "0")  # apps made by tests do not encode the example in the background
os.environ["GRADIO_EXAMPLES_CACHE"] = str(SCRATCH / "examples")  # not .gradio/ in the repository


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(SCRATCH, ignore_errors=True)
    else:
        print(f"\ntemporary files of this run kept in {SCRATCH}")


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
    from selector import settings

    settings.reload()
    yield


@pytest.fixture(autouse=True)
def _settings_follow_the_environment():
    """A test that changes ENTROPY_SELECT_* variables reloads the settings; after it they are read again."""
    from selector import settings

    yield
    if settings.current() != settings.Settings.from_env():
        settings.reload()


@pytest.fixture(scope="session")
def sample() -> Path:
    return SAMPLE
