"""ZeroGPU: with the `spaces` package installed, exactly the encoding of an unseen video and the VLM answers are
decorated with spaces.GPU, each with a duration computed from its arguments; the slider path, the views and the
Compare methods on cached features call none of them; nothing touches CUDA at import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import spaces
from conftest import ROOT, SAMPLE

from selector.app import zerogpu
from selector.app.settings import Settings

ENC = "efficientnet-lite0"


@pytest.fixture
def recorded(monkeypatch):
    """spaces.GPU replaced by a recorder: (function name, duration function) of each decoration."""
    calls: list[tuple[str, object]] = []

    def gpu(task=None, *, duration=None, size=None):
        def deco(fn):
            calls.append((getattr(fn, "__name__", repr(fn)), duration))

            def on_gpu(*a, **k):  # what spaces.GPU returns: a new function, marked so the wiring can be checked
                return fn(*a, **k)

            on_gpu.lent_gpu = True
            on_gpu.__name__ = getattr(fn, "__name__", "task")
            return on_gpu
        return deco if task is None else deco(task)

    monkeypatch.setattr(spaces, "GPU", gpu)
    return calls


def test_exactly_encoding_and_the_vlm_answers_are_decorated_with_durations(recorded):
    from selector.app.service import Service
    from selector.app.ui import Explorer

    e = Explorer(Service(), Settings())  # a new service: its encoder step is decorated now, under the recorder
    names = sorted({n for n, _ in recorded})  # (importing the app may build its default service here too)
    assert names == ["_compare_answers", "_encode_features", "ask"], names
    assert set(zerogpu.TASKS) >= {"encode", "answer", "compare_answers"}
    durations = {n: d for n, d in recorded}
    enc = durations["_encode_features"]
    assert enc(str(SAMPLE), "dinov2-s", 16) == 11 and enc(str(SAMPLE), "google/siglip-so400m-patch14-384", 64) == 29
    assert enc(str(SAMPLE), "dinov2-s", 10_000) == 120  # capped
    ask = durations["ask"]
    # spaces calls the duration with the endpoint's own arguments: by name or by position
    assert ask(video="v.mp4", question="q", num_frames=16, max_new_tokens=64) == 29
    assert ask("v.mp4", "q", 0.35, "llava-hf/llava-onevision-qwen2-7b-ov-hf", 32, 128) == 78
    assert ask("v.mp4", "q", 0.35, "", 10_000, 10_000) == 300
    compare = durations["_compare_answers"]
    assert compare("v.mp4", "q", 0.3, "", "random,tome,vidcom2", 16) == zerogpu.answer_seconds(16, 64, "", 4)
    # the handlers the page and the service call are the decorated functions themselves, not their undecorated originals
    assert getattr(e.service.encode_features, "lent_gpu", False) and getattr(e.ask_endpoint, "lent_gpu", False)
    assert not getattr(e.service._encode_features, "lent_gpu", False)


def test_the_slider_path_views_and_compare_on_cached_features_ask_for_no_gpu(monkeypatch):
    from selector.app.ui import Explorer

    e = Explorer(settings=Settings())
    e.build()
    calls = []
    real = e.service.encode_features

    def counted(*a, **k):
        calls.append(a[:3])
        return real(*a, **k)

    monkeypatch.setattr(e.service, "encode_features", counted)
    first = e.service.analyze(str(SAMPLE), e.Params(retention=0.35, num_frames=8, encoder=ENC))
    assert len(calls) == 1 and not first.features.from_cache
    for r, alpha, tau in ((0.1, 0.5, 1.0), (0.6, 0.2, 0.05), (0.35, 0.9, 3.0)):  # slider moves
        a = e.service.analyze(str(SAMPLE), e.Params(retention=r, alpha=alpha, tau=tau, num_frames=8, encoder=ENC))
        assert a.features.from_cache
    e.views(str(SAMPLE), e.Params(retention=0.2, num_frames=8, encoder=ENC), False, None, files=False, shown={})
    e.compare_endpoint(str(SAMPLE), 0.2, "entropy_select,random,tome,vidcom2", 8, ENC)
    assert len(calls) == 1, calls  # only the first decode + encode
    e.service.analyze(str(SAMPLE), e.Params(retention=0.35, num_frames=12, encoder=ENC))  # new frames: encodes
    assert len(calls) == 2


def test_zerogpu_space_does_not_warm_at_start():
    assert Settings.from_env({}).warm
    assert not Settings.from_env({"SPACES_ZERO_GPU": "true"}).warm


def test_nothing_touches_cuda_at_import():
    code = """
import torch
def refuse(*a, **k):
    raise RuntimeError("CUDA touched at import")
for name in ("is_available", "device_count", "current_device", "init", "synchronize", "get_device_properties"):
    setattr(torch.cuda, name, refuse)
import app  # builds the page (the examples are not warmed: ENTROPY_SELECT_WARM=0)
print("imported", type(app.demo).__name__)
"""
    env = {"ENTROPY_SELECT_WARM": "0", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
    import os

    env["TMPDIR"] = env["HOME"] = os.environ.get("TMPDIR", "/tmp")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "imported Blocks" in r.stdout, r.stderr[-3000:]
