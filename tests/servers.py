"""Start the app in a subprocess on a free loopback port for the tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(log: Path, env_extra: dict[str, str]) -> tuple[str, subprocess.Popen] | None:
    """`python app.py` on a free port, once it answers as this app; None when the port was taken in between (the
    app exits at once, or another process answers there): the caller tries another port."""
    import httpx
    import pytest

    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **env_extra}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            text = log.read_text()
            if re.search(r"address already in use|Cannot find empty port", text, re.I):
                return None
            pytest.fail(f"app exited with {proc.returncode}: {text[-2000:]}")
        try:
            page = httpx.get(url, timeout=5)
            if "ENTROPY-SELECT" in page.text:
                return url, proc
            _stop(proc)  # another server took the port: not ours
            return None
        except httpx.HTTPError:
            time.sleep(0.5)
    _stop(proc)
    pytest.fail("app did not start in 180 s")


def _stop(proc: subprocess.Popen) -> None:
    """Terminate; kill when it has not stopped in 30 s (a test never leaves a server behind)."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@contextlib.contextmanager
def app_server(log: Path, **env_extra: str) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """(url, process, log path) of `python app.py` with the given environment; stopped (killed if need be) on exit.
    A port taken between its choice and the app's bind is retried with another one."""
    import pytest

    for _ in range(3):
        started = _start(log, env_extra)
        if started is not None:
            break
    else:
        pytest.fail("no free port could be bound in 3 tries")
    url, proc = started
    try:
        yield url, proc, log
    finally:
        _stop(proc)
