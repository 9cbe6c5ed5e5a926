"""The banded CPU backend (selector/backends/cpu.py) and the CPU allocator tuning: equal to the reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import configs, shapes, tensor

from selector import SelectorConfig, SelectorError
from selector import settings as es_settings
from selector.method import maps


@settings(max_examples=80, deadline=None)
@given(shape=shapes, cfg=configs, seed=st.integers(0, 2**16))
def test_banded_entropy_equals_reference(shape, cfg, seed):
    from selector.backends.cpu import entropy_banded

    xn = maps.normalize(tensor(shape, seed))
    assert float((entropy_banded(xn, cfg) - maps.entropy_map(xn, cfg)).abs().max()) < 1e-5


@settings(max_examples=80, deadline=None)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 16), st.integers(1, 5)), cfg=configs,
       cols=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_strips_give_the_reference_entropy(shape, cfg, cols, seed):
    """On a CPU wide grids are cut into strips of query columns with halo columns and zero rows between
    them; any strip width (1 column upwards, the last strip part empty) gives the reference map."""
    from selector.backends import cpu as fast

    x = tensor(shape, seed)
    ref = maps.entropy_map(maps.normalize(x), cfg)
    old = fast.STRIP_COLS
    try:
        fast.STRIP_COLS = cols
        rmax = max(cfg.window, cfg.past_window) // 2
        s_, b, hc = fast.strip_plan(shape[2], rmax, "cpu", cols)
        assert s_ * b >= shape[2] and (s_ - 1) * b < shape[2] and hc == (rmax if s_ > 1 else 0)
        for got in (fast.entropy_banded_raw(x, cfg), fast.entropy_banded(maps.normalize(x), cfg)):
            assert float((got - ref).abs().max()) < 1e-5
    finally:
        fast.STRIP_COLS = old


def test_cpu_scratch_reuse_across_layouts_and_threads():
    """The CPU entropy keeps its last layout's buffers per thread: calls that switch grid, window or strip
    layout, and calls from two threads at once, each get the reference map."""
    import threading

    from selector.backends import cpu as fast

    cases = [((3, 5, 24, 8), SelectorConfig()), ((2, 4, 24, 8), SelectorConfig(window=3, temporal_window=4)),
             ((3, 5, 24, 8), SelectorConfig(past_window=5, tau=0.2)), ((4, 3, 7, 5), SelectorConfig())]
    data = [(tensor(shape, i), cfg) for i, (shape, cfg) in enumerate(cases)]
    want = [maps.entropy_map(maps.normalize(x), cfg) for x, cfg in data]
    errors: list[float] = []

    def run(order):
        for i in order:
            x, cfg = data[i]
            errors.append(float((fast.entropy_banded_raw(x, cfg) - want[i]).abs().max()))

    old = fast.STRIP_COLS
    try:
        fast.STRIP_COLS = 4  # the 24-column grids go in strips
        run([0, 1, 0, 2, 3, 0])
        threads = [threading.Thread(target=run, args=(order,)) for order in ([0, 1, 2, 3] * 3, [3, 2, 1, 0] * 3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        fast.release_scratch()
        run([2])
    finally:
        fast.STRIP_COLS = old
    assert len(errors) == 6 + 24 + 1 and max(errors) < 1e-5


def test_cpu_strip_width_is_timed_once_per_grid_and_gives_the_reference(monkeypatch):
    """Unpinned, the CPU entropy times every distinct strip layout of STRIP_CANDIDATES at a grid's first call
    (each twice, on the first TUNE_FRAMES frames), keeps one, and uses it from then on without timing again;
    whatever it keeps, the map is the reference's."""
    from selector.backends import cpu as fast

    monkeypatch.setattr(fast, "STRIP_COLS", None)
    monkeypatch.delenv("ENTROPY_SELECT_STRIP_COLS", raising=False)
    es_settings.reload()
    monkeypatch.setattr(fast, "_tuned", {})
    monkeypatch.setattr(fast, "STRIP_CANDIDATES", (4, 6, 1 << 30, 12))  # 12 is one strip too: 3 layouts timed
    monkeypatch.setattr(fast, "TUNE_FRAMES", 2)
    calls: list[tuple[int, int]] = []
    real = fast._banded_cols

    def spy(x, cfg, normalized, cols):
        calls.append((x.shape[0], cols))
        return real(x, cfg, normalized, cols)

    monkeypatch.setattr(fast, "_banded_cols", spy)
    cfg = SelectorConfig(window=3, past_window=3)  # rmax 1: 24 columns in strips of 4 or 6, or one strip
    x = tensor((4, 5, 24, 8), 3)
    ref = maps.entropy_map(maps.normalize(x), cfg)
    assert fast.strip_choice(5, 24, 8, cfg) is None
    first = fast.entropy_banded_raw(x, cfg)
    timed = calls[:-1]
    assert sorted(timed) == [(2, 4), (2, 4), (2, 6), (2, 6), (2, 1 << 30), (2, 1 << 30)]
    chosen = fast.strip_choice(5, 24, 8, cfg)
    assert chosen in (4, 6, 1 << 30) and calls[-1] == (4, chosen)
    calls.clear()
    again = fast.entropy_banded_raw(x, cfg)
    assert calls == [(4, chosen)] and torch.equal(again, first)
    assert float((first - ref).abs().max()) < 1e-5
    for cols in (4, 6, 1 << 30):  # every candidate layout gives the same map
        assert float((real(maps.normalize(x), cfg, True, cols) - first).abs().max()) < 1e-6
        assert float((real(x, cfg, False, cols) - first).abs().max()) < 1e-6
    calls.clear()  # a grid too narrow for strips has one layout: nothing to time
    narrow = tensor((2, 3, 7, 8), 4)
    fast.entropy_banded_raw(narrow, cfg)
    assert calls == [(2, 4)] and fast.strip_choice(3, 7, 8, cfg) == 4


def test_cpu_strip_width_pinned_by_the_environment(monkeypatch):
    from selector.backends import cpu as fast

    monkeypatch.setattr(fast, "STRIP_COLS", None)
    monkeypatch.setattr(fast, "_tuned", {})
    monkeypatch.setenv("ENTROPY_SELECT_STRIP_COLS", "4")
    es_settings.reload()  # the environment is read once: a launcher that changes it reloads
    cfg = SelectorConfig()
    x = tensor((3, 5, 24, 8), 5)
    assert fast.strip_choice(5, 24, 8, cfg) == 4
    got = fast.entropy_banded_raw(x, cfg)
    assert fast._tuned == {}  # nothing timed
    assert float((got - maps.entropy_map(maps.normalize(x), cfg)).abs().max()) < 1e-5
    for bad in ("0", "nine", "-3"):
        monkeypatch.setenv("ENTROPY_SELECT_STRIP_COLS", bad)
        with pytest.raises(SelectorError, match="ENTROPY_SELECT_STRIP_COLS must be an int >= 1, or empty, got"):
            es_settings.reload()
    assert fast.strip_choice(5, 24, 8, cfg) == 4  # a refused value leaves the settings as they were


def test_strip_plan_of_the_benchmark_grids():
    from selector.backends.cpu import strip_plan

    assert strip_plan(27, 2, "cpu") == (3, 9, 2)  # SigLIP grid on a CPU: 3 strips of 9 (+ 2 + 2) columns
    assert strip_plan(14, 2, "cpu") == (1, 14, 0)  # LLaVA grid: too narrow to gain, plain grid rows
    assert strip_plan(27, 2, "cuda") == (1, 27, 0)


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 3])
def test_cpu_chunks_give_the_same_maps(monkeypatch, frames_per_chunk):
    """The CPU paths go through the frames in chunks (past frames carried over or re-normalized when a
    chunk is shorter than the temporal window); any chunk size gives the one-chunk maps."""
    from selector.backends import cpu as fast

    x = tensor((7, 5, 6, 16), 9)
    whole_g = maps.gradient_magnitude(x)
    cfgs = [SelectorConfig(), SelectorConfig(temporal_window=4, window=3, past_window=5, tau=0.1)]
    whole_h = [fast.entropy_banded_raw(x, c) for c in cfgs]
    monkeypatch.setattr(maps, "CHUNK_BYTES", frames_per_chunk * 5 * 6 * 16 * 4)
    assert torch.equal(maps.gradient_magnitude(x), whole_g)
    for cols in (fast.STRIP_COLS, 2):  # one strip, then 3 strips of 2 columns
        monkeypatch.setattr(fast, "STRIP_COLS", cols)
        for c, h in zip(cfgs, whole_h, strict=True):
            chunked = fast.entropy_banded_raw(x, c)
            assert float((chunked - h).abs().max()) < 1e-6
            assert float((chunked - maps.entropy_map(maps.normalize(x), c)).abs().max()) < 1e-5


_FAULTS = """
import resource, sys, torch
from selector.cpu_tuning import tune_malloc
tuned = tune_malloc()
def faults_of_a_fresh_48mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(12 << 20).fill_(1.0)  # 48 MB written, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults = [faults_of_a_fresh_48mb_tensor() for _ in range(10)]
keep = torch.empty(12 << 20).fill_(1.0)  # a live 48 MB tensor: huge pages show in AnonHugePages
huge = [int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")]
print(tuned, huge[0] if huge else -1, *faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("setting", ["1", "0"])
def test_malloc_tuning_lets_large_tensors_reuse_freed_pages(setting):
    """With the app's malloc setting, once the heap has settled (torch's 64-byte aligned allocations leave a
    few holes first) a new 48 MB tensor reuses freed pages (few page faults); without it, glibc maps fresh pages
    every time (~12 000 faults of 4 KiB). The setting also asks torch for transparent huge pages: where the
    kernel grants them (THP mode `madvise` or `always`), a live 48 MB tensor lies mostly on 2 MB pages.
    ENTROPY_SELECT_MALLOC_TUNING=0 switches both off."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env["ENTROPY_SELECT_MALLOC_TUNING"] = setting
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split()
    tuned, huge_kb, faults = out[0] == "True", int(out[1]), [int(v) for v in out[2:]]
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage")
        thp_mode, defrag = (thp / "enabled").read_text(), (thp / "defrag").read_text()
    except OSError:
        thp_mode, defrag = "[never]", "[never]"
    # a madvise'd region gets its huge pages at the first touch when the kernel may compact memory for it
    granted = "[never]" not in thp_mode and any(m in defrag for m in ("[always]", "[madvise]", "[defer+madvise]"))
    if setting == "1":
        assert tuned and max(faults[-3:]) < 1000, faults
        if granted:
            assert huge_kb >= 24 << 10, (thp_mode, defrag, huge_kb)  # at least half of the 48 MB on 2 MB pages
        elif "[never]" in thp_mode:
            assert huge_kb <= 0, (thp_mode, huge_kb)
    else:
        assert not tuned and min(faults) > 6000, faults
        if "[always]" not in thp_mode:  # `always` gives huge pages to any large mapping, asked or not
            assert huge_kb <= 0, (thp_mode, huge_kb)
