"""Sweep the fused entropy kernel's launch parameters on the GPU, time every stage, then benchmark.

python3 tools/gpu_triton_sweep.py [--no-bench]  — per grid: the best (QR, NKP, BD, num_warps, STAGES) by
median CUDA-graph replay time with max |Ĥ - reference|, the other stages' times, the previous one-kernel
maps version for comparison; then `python -m selector.bench` with the best launch.
"""

import itertools
import sys

import torch

from selector import SelectorConfig, allocate, maps, triton_maps
from selector.core import num_kept

sys.path.insert(0, "tools")
from gpu_stages import graph_ms  # noqa: E402


def sweep(shape, cfg):
    x = torch.randn(*shape, device="cuda")
    ref = maps.entropy_map(maps.normalize(x), cfg)
    rows = []
    for qr, nkp, bd, warps, stages in itertools.product((1, 2), (2, 4), (32, 64), (4, 8), (1, 2, 3)):
        launch = dict(QR=qr, NKP=nkp, BD=bd, num_warps=warps, STAGES=stages)
        try:
            h, _, _ = triton_maps.maps_fused(x, cfg, **launch)
            err = float((h - ref).abs().max())
            ms = graph_ms(lambda launch=launch, x=x: triton_maps.maps_fused(x, cfg, **launch), reps=20)
        except Exception as e:  # a config the compiler or the chip refuses (e.g. shared memory)
            print(f"  skip {launch}: {type(e).__name__}: {str(e)[:120]}")
            continue
        rows.append((ms, err, launch))
    rows.sort(key=lambda r: r[0])
    print("×".join(map(str, shape)) + "  prep + entropy kernels")
    for ms, err, launch in rows[:6]:
        print(f"  {ms:.4f} ms  err {err:.1e}  {launch}")
    best = rows[0][2]
    h, g, st = triton_maps.maps_fused(x, cfg, **best)
    t_, h_, w_, d_ = shape
    m = h_ * w_
    k = num_kept(0.35, t_ * m)
    gn, score, sal = triton_maps.scores_fused(h, g, st, cfg)
    budgets, _, _ = allocate.frame_budgets(score.reshape(t_, m), k, cfg, sal)
    keep, _, _ = triton_maps.pick_fused(score.reshape(t_, m), budgets, (h_, w_), cfg)
    stages = {
        "prep only": lambda: triton_maps._kernels().prep_kernel[(t_ * h_,)](
            x, torch.empty_like(h), torch.empty_like(g), torch.empty_like(st), h_, w_, d_,
            BW=triton_maps._pow2(w_), BD=32, num_warps=4),
        "scores": lambda: triton_maps.scores_fused(h, g, st, cfg),
        "softmax+budgets": lambda: allocate.frame_budgets(score.reshape(t_, m), k, cfg, sal),
        "pick": lambda: triton_maps.pick_fused(score.reshape(t_, m), budgets, (h_, w_), cfg),
        "gather": lambda: triton_maps.gather_fused(x.reshape(t_, m, d_), keep, budgets, k),
        "torch pick (before)": lambda: allocate.pick(score.reshape(t_, m), budgets, (h_, w_), cfg),
        "maps kernel (before)": lambda: triton_maps.maps_triton(x, cfg),
        "input copy": lambda: x.clone(),
    }
    for prec in ("tf32", "ieee"):
        stages[f"prep+entropy in {prec}"] = lambda prec=prec: triton_maps.maps_fused(x, cfg, prec, **best)
    print("  " + " · ".join(f"{name} {graph_ms(fn):.4f}" for name, fn in stages.items()))
    return best


def main():
    cfg = SelectorConfig()
    best = {shape: sweep(shape, cfg) for shape in ((16, 27, 27, 1152), (16, 14, 14, 896))}
    chosen = best[(16, 27, 27, 1152)]
    print("chosen", chosen)
    if "--no-bench" in sys.argv:
        return
    triton_maps.FUSED.update(chosen)
    from selector.bench import main as bench

    bench([])


if __name__ == "__main__":
    main()
