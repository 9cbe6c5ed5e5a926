"""Sweep the fused pipeline's launch parameters on the GPU, time every stage, then benchmark.

python3 tools/gpu_triton_sweep.py [--no-bench]  — for 16×27×27×1152: both entropy kernels ("parts": key-row
parts outer; "dout": feature chunks outer, parts side by side) over (QR, NKP, BD, num_warps, STAGES) and the
prep kernel over (BD, num_warps), by median CUDA-graph replay time, with max |Ĥ - reference|; the best few on
16×14×14×896; the other stages and the previous one-kernel maps version; then `python -m selector.bench`.
"""

import itertools
import sys

import torch

from selector import SelectorConfig, allocate, maps, triton_maps
from selector.core import num_kept

sys.path.insert(0, "tools")
from gpu_stages import graph_ms  # noqa: E402

PARTS = [dict(KERNEL="parts", QR=2, NKP=2, BD=64, num_warps=4, STAGES=3),
         dict(KERNEL="parts", QR=2, NKP=4, BD=32, num_warps=4, STAGES=3),
         dict(KERNEL="parts", QR=1, NKP=4, BD=32, num_warps=4, STAGES=2)]
DOUT = [dict(KERNEL="dout", QR=qr, NKP=4, BD=bd, num_warps=w, STAGES=st)
        for qr, bd, w, st in itertools.product((1, 2), (32, 64), (4, 8, 16), (2, 3))]


def timed(x, cfg, ref, launches, label):
    rows = []
    for launch in launches:
        try:
            h, _, _ = triton_maps.maps_fused(x, cfg, **launch)
            err = float((h - ref).abs().max())
            ms = graph_ms(lambda launch=launch: triton_maps.maps_fused(x, cfg, **launch), reps=20)
        except Exception as e:  # a config the compiler or the chip refuses (e.g. shared memory)
            print(f"  skip {launch}: {type(e).__name__}: {str(e)[:100]}")
            continue
        rows.append((ms, err, launch))
    rows.sort(key=lambda r: r[0])
    print(f"{label}  prep + entropy kernels")
    for ms, err, launch in rows[:6]:
        print(f"  {ms:.4f} ms  err {err:.1e}  {launch}")
    return rows


def stages(x, cfg, best):
    t_, h_, w_, d_ = x.shape
    m = h_ * w_
    k = num_kept(0.35, t_ * m)
    h, g, st = triton_maps.maps_fused(x, cfg, **best)
    gn, score, sal, _ = triton_maps.scores_fused(h, g, st, cfg)
    budgets, _, _ = allocate.frame_budgets(score.reshape(t_, m), k, cfg, sal)
    keep, _, _ = triton_maps.pick_fused(score.reshape(t_, m), budgets, (h_, w_), cfg)
    out = {}
    for bd, warps in itertools.product((32, 64, 128), (4, 8)):
        out[f"prep BD{bd} w{warps}"] = lambda bd=bd, warps=warps: triton_maps._kernels().prep_kernel[(t_ * h_,)](
            x, torch.empty_like(h), torch.empty_like(g), torch.empty_like(st), h_, w_, d_,
            BW=triton_maps._pow2(w_), BD=bd, num_warps=warps)
    out.update({
        "scores": lambda: triton_maps.scores_fused(h, g, st, cfg),
        "softmax+budgets": lambda: allocate.frame_budgets(score.reshape(t_, m), k, cfg, sal),
        "pick": lambda: triton_maps.pick_fused(score.reshape(t_, m), budgets, (h_, w_), cfg),
        "indices": lambda: triton_maps.indices_fused(keep, budgets, k),
        "maps kernel (before)": lambda: triton_maps.maps_triton(x, cfg),
        "input copy": lambda: x.clone(),
    })
    for prec in ("tf32", "ieee"):
        out[f"prep+entropy in {prec}"] = lambda prec=prec: triton_maps.maps_fused(x, cfg, prec, **best)
    res = {name: graph_ms(fn) for name, fn in out.items()}
    print("  " + " · ".join(f"{name} {ms:.4f}" for name, ms in res.items()))
    prep = min((ms, name) for name, ms in res.items() if name.startswith("prep BD"))[1].split()
    return dict(PREP_BD=int(prep[1][2:]), PREP_WARPS=int(prep[2][1:]))


def main():
    cfg = SelectorConfig()
    x = torch.randn(16, 27, 27, 1152, device="cuda")
    ref = maps.entropy_map(maps.normalize(x), cfg)
    rows = timed(x, cfg, ref, PARTS + DOUT, "16×27×27×1152")
    chosen = dict(rows[0][2])
    chosen.update(stages(x, cfg, chosen))
    y = torch.randn(16, 14, 14, 896, device="cuda")
    ref = maps.entropy_map(maps.normalize(y), cfg)
    small = timed(y, cfg, ref, [r[2] for r in rows[:5]] + [PARTS[0]], "16×14×14×896")
    stages(y, cfg, small[0][2])
    print("chosen", chosen)
    if "--no-bench" in sys.argv:
        return
    triton_maps.FUSED.update(chosen)
    from selector.bench import main as bench

    for args in (["--quick"], ["--quick", "--no-graph"], ["--quick", "--dtype", "bfloat16"],
                 ["--quick", "--dtype", "bfloat16", "--no-graph"], []):
        print("python -m selector.bench", *args, flush=True)
        bench(args)


if __name__ == "__main__":
    main()
