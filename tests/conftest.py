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
# A folder named by the caller (ENTROPY_SELECT_TEST_TMP set before the run, e.g. for a tool that runs many pytest
# sessions in one process, such as mutmut) is the caller's: it is made if missing and never removed.
OWN_SCRATCH = "ENTROPY_SELECT_TEST_TMP" not in os.environ
if OWN_SCRATCH:
    os.environ["ENTROPY_SELECT_TEST_TMP"] = tempfile.mkdtemp(prefix="es-tests-")
SCRATCH = Path(os.environ["ENTROPY_SELECT_TEST_TMP"])
# the README's command runs the suite in two pytest-xdist workers: each has its own folder inside (servers' files,
# gradio's caches and the lmms-eval checkpoints are never shared between them)
if os.environ.get("PYTEST_XDIST_WORKER"):
    SCRATCH = SCRATCH / os.environ["PYTEST_XDIST_WORKER"]
SCRATCH.mkdir(parents=True, exist_ok=True)
os.environ["TMPDIR"] = tempfile.tempdir = str(SCRATCH)
os.environ["GRADIO_TEMP_DIR"] = str(SCRATCH / "gradio")
os.environ.setdefault("ENTROPY_SELECT_WARM", "0")  # apps made by tests do not encode the example in the background
os.environ["GRADIO_EXAMPLES_CACHE"] = str(SCRATCH / "examples")  # not .gradio/ in the repository
# the CPU entropy's strip width is pinned (tuning times the layouts, and a busy machine could pick another one per
# run); the tests of the tuning itself unpin it
os.environ.setdefault("ENTROPY_SELECT_STRIP_COLS", "9")

# hypothesis: under CI the examples are derandomized (the same ones every run, so a red run reproduces) and a failing
# one is printed with the blob that replays it (@reproduce_failure); locally each run draws new ones
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("dev", print_blob=True, deadline=None)
hypothesis_settings.load_profile("ci" if IN_CI else "dev")


def require_triton() -> None:
    """Skip where Triton is missing (a CPU-only PyTorch), with the reason; under CI, whose PyTorch has it, fail."""
    try:
        import triton  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("triton is missing: the CI's PyTorch wheel brings it")
        pytest.skip("triton is not installed (a CPU-only PyTorch)")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and OWN_SCRATCH:
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
