"""Sweep the entropy kernel's launch parameters on the GPU (query patch shape, key parts, warps, D chunk, precision).

python3 tools/gpu_entropy_sweep.py [--bench]  — prep + entropy by median CUDA-graph replay time, with the
largest |Ĥ - reference|, on 16×27×27×1152 fp32; the best few on 256×27×27×1152, on 16×14×14×896 and in bf16;
prints the chosen launch parameters; `--bench` then runs `python -m selector.bench` with them.
python3 tools/gpu_entropy_sweep.py --bf16  — the patch kernel's settings on bf16 features (one native tensor-core
pass, so other tile shapes than in fp32 may win), ranked on 256×27×27×1152, the best few on 16×27×27×1152.
python3 tools/gpu_entropy_sweep.py --small  — 16-query patches (4×4, 2×8) against the default, fp32 and bf16.
(The fused pipeline keeps one entropy kernel, the patch kernel; these flags only sweep its launch parameters.)
"""

import itertools
import sys

import torch

from selector import SelectorConfig
from selector.backends import triton as triton_maps
from selector.method import maps

sys.path.insert(0, "tools")
from gpu_stages import graph_ms  # noqa: E402

BASE = dict(triton_maps.FUSED)
CANDIDATES = ([dict(BASE, PREC="tf32x3")]
              + [dict(BASE, PREC="bf16x3", PQR=pqr, PQC=pqc, PNK=nk, num_warps=w, BD=bd, BD16=bd,
                      PQR16=pqr, PQC16=pqc, PNK16=nk)
                 for (pqr, pqc), nk, w, bd in itertools.product(((4, 4), (4, 8), (2, 16), (8, 8), (8, 4)),
                                                                (64, 128), (4, 8), (32, 64))])


def short(launch):
    keys = ("PREC", "PQR", "PQC", "PNK", "PQR16", "PQC16", "PNK16", "BD", "num_warps", "STAGES")
    return " ".join(f"{k}={launch[k]}" for k in keys)


def run(x, cfg, launches, label, reps=20):
    ref = maps.entropy_map(maps.normalize(x.float()), cfg)
    rows = []
    for launch in launches:
        try:
            h, _, _ = triton_maps.maps_fused(x, cfg, **launch)
            err = float((h - ref).abs().max())
            ms = graph_ms(lambda launch=launch: triton_maps.maps_fused(x, cfg, **launch), reps=reps)
        except Exception as e:  # a config the compiler or the chip refuses
            print(f"  skip {short(launch)}: {type(e).__name__}: {str(e)[:120]}")
            continue
        rows.append((ms, err, launch))
    rows.sort(key=lambda r: r[0])
    print(f"{label}  prep + entropy", flush=True)
    for ms, err, launch in rows[:8]:
        print(f"  {ms:.4f} ms  err {err:.1e}  {short(launch)}")
    for ms, err, launch in rows[8:]:
        if launch.get("PREC") == "tf32x3":
            print(f"  {ms:.4f} ms  err {err:.1e}  {short(launch)}")
    return [r[2] for r in rows]


PATCHES_BF16 = [dict(BASE, PQR16=pqr, PQC16=pqc, PNK16=nk, num_warps=w, BD=bd, BD16=bd, STAGES=st)
                for (pqr, pqc), nk, w, bd, st in itertools.product(
                    ((4, 8), (8, 8), (4, 16), (8, 4), (2, 16)), (64, 128), (4, 8), (32, 64, 128), (2, 3))
                if not (pqr * pqc >= 128 and w == 4) and not (bd == 128 and st == 3)]


def main_bf16():
    cfg = SelectorConfig()
    z = torch.randn(256, 27, 27, 1152, device="cuda").bfloat16()
    ranked = run(z, cfg, PATCHES_BF16, "256×27×27×1152 bfloat16", reps=5)
    x = torch.randn(16, 27, 27, 1152, device="cuda").bfloat16()
    run(x, cfg, ranked[:8] + [BASE], "16×27×27×1152 bfloat16")
    print("chosen", ranked[0], flush=True)


#: 16-query patches: fewer tensor-core products per query (192 key slots, three parts of 64, against 256 for the
#: 4×8 patch), on M = 16 tiles
PATCHES_SMALL = [dict(BASE, PQR=pqr, PQC=pqc, PNK=64, PQR16=pqr, PQC16=pqc, PNK16=64, num_warps=w,
                      BD=bd, BD16=bd)
                 for (pqr, pqc), w, bd in itertools.product(((4, 4), (2, 8)), (2, 4), (32, 64))]


def main_small():
    cfg = SelectorConfig()
    z = torch.randn(256, 27, 27, 1152, device="cuda")
    ranked = run(z, cfg, PATCHES_SMALL + [BASE], "256×27×27×1152 float32", reps=5)
    top = ranked[:3] + [BASE]
    run(z.bfloat16(), cfg, top, "256×27×27×1152 bfloat16", reps=5)
    x = torch.randn(16, 27, 27, 1152, device="cuda")
    run(x, cfg, top, "16×27×27×1152 float32")
    run(x, SelectorConfig(tau=0.01), top, "16×27×27×1152 float32 τ=0.01")


def main():
    if "--bf16" in sys.argv:
        return main_bf16()
    if "--small" in sys.argv:
        return main_small()
    cfg = SelectorConfig()
    x = torch.randn(16, 27, 27, 1152, device="cuda")
    ranked = run(x, cfg, CANDIDATES, "16×27×27×1152 float32")
    top = [c for c in ranked if c.get("PREC") == "bf16x3"][:4] + [CANDIDATES[0], BASE]
    run(x, SelectorConfig(tau=0.01), top, "16×27×27×1152 float32 τ=0.01")
    z = torch.randn(256, 27, 27, 1152, device="cuda")
    run(z, cfg, top, "256×27×27×1152 float32", reps=5)
    y = torch.randn(16, 14, 14, 896, device="cuda")
    run(y, cfg, top, "16×14×14×896 float32")
    bf = top[:4] + [BASE]
    run(x.bfloat16(), cfg, bf, "16×27×27×1152 bfloat16")
    run(z.bfloat16(), cfg, bf, "256×27×27×1152 bfloat16", reps=5)
    chosen = ranked[0]
    print("chosen", chosen, flush=True)
    if "--bench" not in sys.argv:
        return
    triton_maps.FUSED.update(chosen)
    from selector.bench.selector import main as bench

    for args in (["--quick"], ["--quick", "--dtype", "bfloat16"],
                 ["--grid", "256x27x27x1152", "--grid", "64x27x27x1152", "--repeats", "10"],
                 ["--grid", "256x27x27x1152", "--dtype", "bfloat16", "--repeats", "10"]):
        print("python -m selector.bench", *args, flush=True)
        bench(args)


if __name__ == "__main__":
    main()
