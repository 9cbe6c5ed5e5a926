"""Sweep the launch settings of the fused pipeline's memory-bound kernels on the GPU: prep (one pass over the
features) and the kept indices, plus the budget kernel's time; each by median CUDA-graph replay time.

python3 tools/gpu_pass_sweep.py  — 256×27×27×1152 and 16×27×27×1152, float32 and bfloat16; indices at r = 0.35
and 0.9, checked against keep.nonzero() for every setting.
"""

import itertools
import sys

import torch

from selector import SelectorConfig, triton_maps
from selector.core import num_kept

sys.path.insert(0, "tools")
from gpu_stages import graph_ms  # noqa: E402

PREP = [dict(PREP_BD=bd, PREP_BD16=bd, PREP_RB=rb, PREP_WARPS=w, PREP_STAGES=st)
        for rb, bd, w, st in itertools.product((1, 2, 4), (32, 64, 128), (4, 8), (1, 2)) if rb * bd <= 256]
INDEX = [dict(MC=mc, num_warps=w) for mc, w in itertools.product((64, 128, 256, 512, 1024), (2, 4, 8))]


def prep_ms(x, c):
    """(median ms, (inv, g, row stats)) of the prep kernel with launch c; (inf, message) if refused."""
    t_, h_, w_, d_ = x.shape
    inv = torch.empty((t_, h_, w_), device=x.device)
    g = torch.empty_like(inv)
    stats = torch.empty((t_ * h_, 4), device=x.device)
    bd = c["PREP_BD16"] if x.element_size() == 2 else c["PREP_BD"]
    rb = c["PREP_RB"]

    def fn():
        triton_maps._kernels().prep_kernel[(t_ * -(-h_ // rb),)](
            x, x, inv, g, stats, h_, w_, d_, BW=32, BD=bd, RB=rb, STAGES=c["PREP_STAGES"],
            num_warps=c["PREP_WARPS"], IND=False)
    try:
        fn()
        out = (inv.clone(), g.clone(), stats.clone())
        return graph_ms(fn, reps=10), out
    except Exception as e:  # a setting the chip refuses (shared memory)
        return float("inf"), str(e)[:60]


def main():
    cfg = SelectorConfig()
    for shape in ((256, 27, 27, 1152), (16, 27, 27, 1152)):
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.randn(*shape, device="cuda").to(dtype)
            t_, h_, w_, d_ = shape
            m = h_ * w_
            label = f"{'×'.join(map(str, shape))} {str(dtype)[6:]}"
            base = {k: v for k, v in triton_maps.FUSED.items() if k.startswith("PREP")}
            ms0, ref = prep_ms(x, base)
            rows, wrong = [], 0
            for c in PREP:
                ms, out = prep_ms(x, c)
                if isinstance(out, tuple) and c["PREP_BD"] == base["PREP_BD"] == base["PREP_BD16"]:
                    # same D chunks, any row block: the same numbers as the current launch
                    wrong += not all(torch.equal(a, b) for a, b in zip(out, ref, strict=True))
                rows.append((ms, c))
            rows.sort(key=lambda v: v[0])
            print(f"{label} prep: current {ms0:.4f} {base} · best " + " · ".join(
                f"{ms:.4f} {c}" for ms, c in rows[:5]) + f" · differing {wrong}", flush=True)
            w = torch.softmax(torch.randn(t_, device="cuda"), 0)
            for r in (0.35, 0.9):
                k = num_kept(r, t_ * m)
                ms = graph_ms(lambda w=w, k=k, m=m: triton_maps.budgets_triton(w, k, 0, m, m), reps=20)
                budgets = triton_maps.budgets_triton(w, k, 0, m, m)
                score = torch.rand(t_, m, device="cuda")
                keep = triton_maps.pick_fused(score, budgets, (h_, w_), cfg)[0]
                res = []
                for c in INDEX:
                    ok = torch.equal(triton_maps.indices_fused(keep, budgets, k, **c), keep.reshape(-1).nonzero()[:, 0])
                    a = (keep, budgets, k)
                    res.append((graph_ms(lambda c=c, a=a: triton_maps.indices_fused(*a, **c), reps=10), ok, c))
                res.sort(key=lambda v: v[0])
                cur = next(v for v in res if v[2] == triton_maps.INDEX)
                bad = sum(not v[1] for v in res)
                print(f"{label} r={r}: budgets {ms:.4f} ms · indices best " + " · ".join(
                    f"{v[0]:.4f} {v[2]}" for v in res[:4]) + f" · current {cur[0]:.4f} · wrong {bad}", flush=True)


if __name__ == "__main__":
    main()
