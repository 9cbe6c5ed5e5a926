"""Sweep the maps kernel's launch parameters on the GPU, then benchmark the selector with the best.

python3 tools/gpu_triton_sweep.py  — table of (NKP, BD, num_warps, STAGES) → ms and max |Ĥ - reference|.
"""

import itertools
import sys

import torch

from selector import SelectorConfig, maps, triton_maps

sys.path.insert(0, "tools")
from gpu_stages import graph_ms  # noqa: E402


def main():
    cfg = SelectorConfig()
    best = {}
    for shape in ((16, 27, 27, 1152), (16, 14, 14, 896)):
        x = torch.randn(*shape, device="cuda")
        ref = maps.entropy_map(maps.normalize(x), cfg)
        rows = []
        for nkp, bd, warps, stages in itertools.product((4, 8, 16), (16, 32, 64), (4, 8), (1, 2, 3)):
            launch = dict(NKP=nkp, BD=bd, num_warps=warps, STAGES=stages)
            try:
                h, _ = triton_maps.maps_triton(x, cfg, **launch)
                err = float((h - ref).abs().max())
                ms = graph_ms(lambda launch=launch, x=x: triton_maps.maps_triton(x, cfg, **launch), reps=20)
            except Exception as e:  # a config the compiler or the chip refuses (e.g. shared memory)
                print(f"  skip {launch}: {type(e).__name__}")
                continue
            rows.append((ms, err, launch))
        rows.sort(key=lambda r: r[0])
        print("×".join(map(str, shape)))
        for ms, err, launch in rows[:8]:
            print(f"  {ms:.4f} ms  err {err:.1e}  {launch}")
        best[shape] = rows[0]
        for prec in ("tf32", "ieee"):
            launch = rows[0][2]
            h, _ = triton_maps.maps_triton(x, cfg, prec, **launch)
            ms = graph_ms(lambda launch=launch, x=x, prec=prec: triton_maps.maps_triton(x, cfg, prec, **launch))
            print(f"  best launch with {prec}: {ms:.4f} ms, err {float((h - ref).abs().max()):.1e}")
    chosen = best[(16, 27, 27, 1152)][2]
    print("chosen", chosen)
    triton_maps.CONFIG.update(chosen)
    from selector.bench import main as bench

    bench([])


if __name__ == "__main__":
    main()
