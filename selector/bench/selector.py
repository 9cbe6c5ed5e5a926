"""Selector benchmark: python -m selector.bench [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--quick]
                           [--grid TxHxWxD ...]

Prints one row per (grid, retention): median ms of the fast path (the selection: maps, budgets, kept
indices), tokens/s, the median with the K kept rows copied out as well (`Selection.tokens`, a copy that
grows with K; a VLM does it once, into its input embeddings), peak memory, the spread over retentions
(max/min of the medians, without and with the rows), and, at each retention, the speed-up over a
straightforward PyTorch version of the same formulas (one tensor op per window offset, `maps.entropy_map`)
and how many kept tokens differ from its selection. `--encoders` times the offline encoders.

The retentions of a grid are timed interleaved (one call of each per round, the order rotated every round),
so a drift of the host's speed during the run lands on every retention alike instead of on the ones timed
last: max/min compares retentions, not moments.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from .. import SelectorConfig, backends, select_tokens
from ..method import maps
from ..method.pipeline import num_kept

SHAPES = [(16, 27, 27, 1152), (16, 14, 14, 896), (64, 27, 27, 1152), (256, 27, 27, 1152)]
RETENTIONS = [0.05, 0.1, 0.35, 0.5, 0.9]


def _timer(device: torch.device, fn: Callable[[], object], repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _interleaved(device: torch.device, fns: list[Callable[[], object]], repeats: int,
                 warmup: int = 3) -> list[list[float]]:
    """Times of `repeats` calls of each fn, taken in rounds of one call each (round i starts at fn i mod n)."""
    for fn in fns:
        _timer(device, fn, 0, warmup)
    n = len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for i in range(repeats):
        for j in ((i + o) % n for o in range(n)):
            times[j] += _timer(device, fns[j], 1, warmup=0)
    return times


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS, MiB


def bench_selector(device: torch.device, dtype: torch.dtype, shapes: list[tuple[int, int, int, int]],
                   repeats: int, ref_max_tokens: int, use_graph: bool = True) -> None:
    cfg = SelectorConfig()
    graph = device.type == "cuda" and use_graph
    from .. import cpu_tuning

    probe = torch.zeros(1, 1, 1, 1, device=device)
    path = "fused Triton kernels" if backends.choose(probe, cfg).name == "triton" else "banded GEMM entropy"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name} · torch {torch.__version__} · "
          f"dtype {dtype} · threads {torch.get_num_threads()} · fast path: {path} · malloc "
          f"{'tuned' if cpu_tuning.MALLOC_TUNED else 'default'}"
          + (" + huge pages" if device.type == "cpu" and cpu_tuning.huge_pages_asked() else "")
          + (" + CUDA graph" if graph else "") + f" · {repeats} repeats, median, retentions interleaved")
    head = (f"{'grid T×H×W×D':<18}{'r':>6}{'K':>10}{'median ms':>11}{'p90 ms':>9}{'Mtok/s':>9}{'+rows ms':>10}"
            f"{'peak MiB':>10}{'max/min':>9}{'+rows':>7}{'ref ms':>10}{'speed-up':>9}")
    print(head)
    print("-" * len(head))
    for shape in shapes:
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)
        n = shape[0] * shape[1] * shape[2]
        rows, differ = [], []
        ks = [num_kept(r, n) for r in RETENTIONS]
        mine: dict = {}  # the last selection at each retention, checked against the reference below

        def select(r: float, x: torch.Tensor = x) -> object:
            return select_tokens(x, r, cfg, timed=False, cuda_graph=graph)

        def select_and_copy(r: float, mine: dict = mine) -> torch.Tensor:
            mine[r] = select(r)
            return mine[r].tokens  # the same, and the kept rows copied out

        sel_t = _interleaved(device, [lambda r=r: select(r) for r in RETENTIONS], repeats)  # type: ignore[misc]
        rows_t = _interleaved(device, [lambda r=r: select_and_copy(r) for r in RETENTIONS], repeats)  # type: ignore[misc]
        for r, k, t, t_rows in zip(RETENTIONS, ks, sel_t, rows_t, strict=True):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            select(r)
            peak = _peak_mb(device)  # of the selection (the kept rows' copy comes on top)
            med = statistics.median(t)
            p90 = sorted(t)[int(0.9 * (len(t) - 1))]
            ref_ms = None
            if n <= ref_max_tokens:  # the straightforward version at the same retention
                last: list = []  # the reference's selection, kept from its timed calls
                ref = _timer(device, lambda r=r, x=x, last=last: last.append(  # type: ignore[misc]
                    select_tokens(x, r, cfg, timed=False, entropy_fn=maps.entropy_map).indices),
                    max(3, repeats // 8), warmup=1)
                ref_ms = statistics.median(ref)
                want = last[-1]
                got = mine[r].indices
                differ.append(f"{k - torch.isin(got, want).sum().item() if got.numel() == k else -1} of {k}")
            rows.append((r, k, med, p90, peak, statistics.median(t_rows), ref_ms))
        spread = max(row[2] for row in rows) / min(row[2] for row in rows)
        spread_rows = max(row[5] for row in rows) / min(row[5] for row in rows)
        for i, (r, k, med, p90, peak, with_rows, ref_ms) in enumerate(rows):
            grid = "×".join(map(str, shape)) if i == 0 else ""
            ref_txt = f"{ref_ms:10.2f}{ref_ms / med:8.1f}×" if ref_ms is not None else ""
            spread_txt = f"{spread:9.3f}{spread_rows:7.3f}" if i == 0 else f"{'':>16}"
            print(f"{grid:<18}{r:>6}{k:>10}{med:>11.3f}{p90:>9.3f}{n / med / 1e3:>9.3g}{with_rows:>10.3f}"
                  f"{peak:>10.0f}{spread_txt}{ref_txt}")
        if differ:
            print("  kept tokens that differ from the reference's, by retention: " + ", ".join(differ))
        if device.type == "cpu":
            from ..backends import cpu as fast

            cols = fast.strip_choice(shape[1], shape[2], shape[3], cfg)
            rmax = max(cfg.window, cfg.past_window) // 2
            plan = fast.strip_plan(shape[2], rmax, "cpu", cols or fast.DEFAULT_STRIP_COLS)
            how = "pinned" if fast.pinned_strip_cols() is not None else "timed at the first call"
            print(f"  CPU entropy layout: {plan[0]} strip(s) of {plan[1]} query columns ({how})")
        del x
        if graph:
            from ..backends.graphs import clear_graphs

            clear_graphs()
            torch.cuda.empty_cache()


def bench_encoders(device: torch.device, frames: int) -> None:
    import numpy as np

    from ..encoders import OFFLINE, load_encoder

    print(f"encoders on {device} · {frames} frames of 720×1280 · torch threads {torch.get_num_threads()}")
    print(f"{'encoder':<22}{'grid':>14}{'load s':>9}{'ms/frame':>10}")
    video = np.random.RandomState(0).randint(0, 255, (frames, 720, 1280, 3), dtype=np.uint8)
    for name in OFFLINE:
        t0 = time.perf_counter()
        enc = load_encoder(name, device)
        load = time.perf_counter() - t0
        enc.encode(video[:2])
        t = _timer(device, lambda enc=enc: enc.encode(video), 3, warmup=0)  # type: ignore[misc]
        print(f"{name:<22}{'×'.join(map(str, (*enc.grid, enc.dim))):>14}{load:>9.2f}"
              f"{statistics.median(t) / frames:>10.1f}")


def bench_precisions(frames: int) -> None:
    """The offline encoders on this CPU in fp32, bf16 (autocast, oneDNN) and int8 (dynamic quantization of the
    linear layers, per-channel weights; DINOv2-S only), side by side: seconds for `frames` frames of the bundled
    clip, the token cosine to fp32 (mean, 0.1 % quantile, min), and how many kept/dropped decisions of the default
    selector match fp32's at r = 0.1, 0.35, 0.5."""
    import dataclasses

    from .. import select_tokens
    from ..encoders import OFFLINE, bf16_instructions, load_encoder
    from ..video import example_video, read_clip

    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
             if f in _cpu_flags()]
    print(f"CPU: {_cpu_name()} · flags {' '.join(flags) or '?'} · torch {torch.__version__} · threads "
          f"{torch.get_num_threads()} · bf16 instructions: {bf16_instructions()} · {frames} frames of the bundled "
          "clip · best of 2 after a warm-up")
    print(f"{'encoder':<20}{'precision':>10}{'s':>8}{'× fp32':>8}{'cos mean':>10}{'cos 0.1%':>10}{'cos min':>9}"
          f"{'same r=0.1':>12}{'r=0.35':>8}{'r=0.5':>8}")
    clip = read_clip(example_video(), frames)
    for name in OFFLINE:
        base = load_encoder(name, "cpu", "fp32")
        variants = {"fp32": base, "bf16": load_encoder(name, "cpu", "bf16")}
        if name == "dinov2-s":
            variants["int8"] = dataclasses.replace(base, forward=_int8_forward(base), precision="int8")
        ref, t_ref = None, 0.0
        for prec, enc in variants.items():
            enc.encode(clip.frames[:2])
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                out = enc.encode(clip.frames)
                times.append(time.perf_counter() - t0)
            t = min(times)
            if ref is None:
                ref, t_ref = out, t
            d = out.shape[-1]
            cos = torch.nn.functional.cosine_similarity(out.reshape(-1, d), ref.reshape(-1, d), dim=-1)
            same = []
            for r in (0.1, 0.35, 0.5):
                a, b = select_tokens(ref, r).keep, select_tokens(out, r).keep
                same.append(float((a == b).float().mean()))
            print(f"{name:<20}{prec:>10}{t:>8.2f}{t_ref / t:>8.2f}{float(cos.mean()):>10.5f}"
                  f"{float(torch.quantile(cos, 0.001)):>10.5f}{float(cos.min()):>9.4f}"
                  + "".join(f"{s:>{w}.2%}" for s, w in zip(same, (12, 8, 8), strict=True)), flush=True)


def _int8_forward(enc):
    """DINOv2-S's forward with its linear layers dynamically quantized to int8 (per-channel weights)."""
    import copy
    import warnings

    from ..encoders import _dinov2_model

    model = copy.deepcopy(_dinov2_model(torch.device("cpu")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
    g = enc.grid[0]

    def fwd(x: torch.Tensor) -> torch.Tensor:
        return q(pixel_values=x).last_hidden_state[:, 1:].reshape(x.shape[0], g, g, -1)

    return fwd


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


def _cpu_name() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor())
    except OSError:
        return platform.processor() or "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m selector.bench", description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--quick", action="store_true", help="the two 16-frame grids, fewer repeats")
    ap.add_argument("--grid", action="append", default=None, metavar="TxHxWxD",
                    help="time this grid instead of the default ones (repeatable), e.g. 256x27x27x1152")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed calls per retention (default: GPU 60, CPU 30; --quick: 30 / 10)")
    ap.add_argument("--encoders", action="store_true", help="time the offline encoders instead")
    ap.add_argument("--precisions", action="store_true",
                    help="the offline encoders on this CPU in fp32, bf16 and int8 side by side, with the agreement of "
                         "the selections")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--no-graph", action="store_true", help="on a GPU, time the eager calls (no CUDA graph)")
    ap.add_argument("--malloc-tuning", action="store_true",
                    help="raise glibc's malloc thresholds and ask for transparent huge pages first, as the app and "
                         "the command line do (selector/cpu_tuning.py); the reference gains more from it than the "
                         "fast path")
    ap.add_argument("--fp32-dots", default=None, choices=["bf16x3", "tf32x3", "tf32"],
                    help="on a GPU, how the fused kernels multiply fp32 features: bf16x3 (default, ~1e-7), tf32x3, "
                         "or tf32 (one tensor-core pass, ~1e-5: faster, and near-ties may select differently)")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if a.malloc_tuning:
        from ..cpu_tuning import tune_malloc

        tune_malloc()
    if a.fp32_dots:
        from ..backends import triton as triton_maps

        triton_maps.FUSED["PREC"] = a.fp32_dots
    if a.precisions:
        bench_precisions(a.frames)
        return
    if a.encoders:
        bench_encoders(device, a.frames)
        return
    shapes = SHAPES[:2] if a.quick else SHAPES
    if a.grid:
        try:
            shapes = [tuple(int(v) for v in g.lower().replace("×", "x").split("x")) for g in a.grid]
        except ValueError:
            ap.error(f"--grid takes T×H×W×D, e.g. 16x27x27x1152; got {a.grid}")
        if any(len(s) != 4 or min(s) < 1 for s in shapes):
            ap.error(f"--grid takes four positive sizes T×H×W×D; got {a.grid}")
    # GPU calls of 0.1-0.3 ms are mostly host work: 60 interleaved rounds keep a slow spell of the host from
    # deciding their max/min (20 rounds gave 1.06-1.20 on the 16-frame grids, 60 gave 1.006-1.024; H100)
    gpu = device.type == "cuda"
    repeats = a.repeats or ((30 if gpu else 10) if a.quick else (60 if gpu else 30))
    # the straightforward version is timed where it takes seconds at most
    ref_max = 256 * 27 * 27 if device.type == "cuda" else 16 * 27 * 27
    bench_selector(device, getattr(torch, a.dtype), shapes, repeats, ref_max, not a.no_graph)


if __name__ == "__main__":
    main()
