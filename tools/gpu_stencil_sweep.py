"""Sweep the window-only ("stencil") entropy kernel on the GPU against the tensor-core ("dout") kernel.

python3 tools/gpu_stencil_sweep.py [--quick] [--bench]  — prep + entropy by median CUDA-graph replay time, with the
largest |Ĥ - reference|, over (BQ, SBD, num_warps, STAGES) on 16×27×27×1152 fp32; the best few on the other
grids and in bf16; prints the chosen launch parameters;
`--bench` then runs `python -m selector.bench` with them.
"""

import itertools
import sys

import torch

from selector import SelectorConfig, maps, triton_maps

sys.path.insert(0, "tools")
from gpu_stages import graph_ms  # noqa: E402

GRID = [dict(KERNEL="stencil", BQ=bq, SBD=bd, num_warps=w, STAGES=st)
        for bq, bd, w, st in itertools.product((16, 32, 64), (4, 8, 16), (4, 8), (1, 3))]
DOUT = dict(triton_maps.FUSED, KERNEL="dout")


def run(x, cfg, launches, label, reps=20):
    ref = maps.entropy_map(maps.normalize(x.float()), cfg)
    rows = []
    for launch in launches:
        try:
            h, _, _ = triton_maps.maps_fused(x, cfg, **launch)
            err = float((h - ref).abs().max())
            ms = graph_ms(lambda launch=launch: triton_maps.maps_fused(x, cfg, **launch), reps=reps)
        except Exception as e:  # a config the compiler or the chip refuses
            print(f"  skip {launch}: {type(e).__name__}: {str(e)[:120]}")
            continue
        rows.append((ms, err, launch))
    rows.sort(key=lambda r: r[0])
    print(f"{label}  prep + entropy", flush=True)
    for ms, err, launch in rows[:8]:
        print(f"  {ms:.4f} ms  err {err:.1e}  {launch}")
    dout = [r for r in rows if r[2]["KERNEL"] == "dout"]
    if dout:
        print(f"  dout (tensor cores): {dout[0][0]:.4f} ms  err {dout[0][1]:.1e}")
    return [r[2] for r in rows if r[2]["KERNEL"] == "stencil"]


def main():
    cfg = SelectorConfig()
    x = torch.randn(16, 27, 27, 1152, device="cuda")
    grid = GRID[::3] if "--quick" in sys.argv else GRID
    best = run(x, cfg, grid + [DOUT], "16×27×27×1152 float32")
    top = best[:6]
    run(x.bfloat16(), cfg, top + [DOUT], "16×27×27×1152 bfloat16")
    y = torch.randn(16, 14, 14, 896, device="cuda")
    run(y, cfg, top + [DOUT], "16×14×14×896 float32")
    run(y.bfloat16(), cfg, top + [DOUT], "16×14×14×896 bfloat16")
    z = torch.randn(256, 27, 27, 1152, device="cuda")
    run(z, cfg, top[:3] + [DOUT], "256×27×27×1152 float32", reps=5)
    run(z.bfloat16(), cfg, top[:3] + [DOUT], "256×27×27×1152 bfloat16", reps=5)
    run(x, SelectorConfig(tau=0.05, window=7, temporal_window=4), top[:2] + [DOUT], "16×27×27×1152 k=7 K_t=4")
    print("chosen", top[0], flush=True)
    if "--bench" not in sys.argv:
        return
    triton_maps.FUSED.update(top[0])
    from selector.bench import main as bench

    for args in (["--quick"], ["--quick", "--dtype", "bfloat16"],
                 ["--grid", "256x27x27x1152", "--grid", "64x27x27x1152", "--repeats", "10"],
                 ["--grid", "256x27x27x1152", "--dtype", "bfloat16", "--repeats", "10"]):
        print("python -m selector.bench", *args, flush=True)
        bench(args)


if __name__ == "__main__":
    main()
