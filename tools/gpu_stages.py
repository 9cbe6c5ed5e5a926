"""Per-stage GPU timings of the selector, each stage captured in its own CUDA graph and replayed.

python3 tools/gpu_stages.py  — prints ms per stage for 16×27×27×1152 (fp32) and 16×14×14×896.
"""

import statistics

import torch

from selector import SelectorConfig
from selector.backends import triton as triton_maps
from selector.backends.cpu import entropy_banded
from selector.method import allocate, maps
from selector.method.pipeline import num_kept


def graph_ms(fn, reps=50):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def main():
    cfg = SelectorConfig()
    for shape in ((16, 27, 27, 1152), (16, 14, 14, 896)):
        x = torch.randn(*shape, device="cuda")
        t_, h_, w_, d_ = x.shape
        k = num_kept(0.35, t_ * h_ * w_)
        xn = maps.normalize(x)
        score = torch.rand(t_, h_ * w_, device="cuda")
        budgets, _, _ = allocate.frame_budgets(score, k, cfg)
        keep, rank, quota = allocate.pick(score, budgets, (h_, w_), cfg)
        rows = {
            "triton maps (bf16x3)": lambda x=x: triton_maps.maps_fused(x, cfg),
            "triton maps (tf32x3)": lambda x=x: triton_maps.maps_fused(x, cfg, "tf32x3"),
            "normalize": lambda x=x: maps.normalize(x),
            "entropy banded": lambda xn=xn: entropy_banded(xn, cfg),
            "entropy reference": lambda xn=xn: maps.entropy_map(xn, cfg),
            "gradient torch": lambda x=x: maps.gradient_map(x),
            "budgets": lambda s=score, k=k: allocate.frame_budgets(s, k, cfg),
            "pick": lambda s=score, b=budgets, hw=(h_, w_): allocate.pick(s, b, hw, cfg),
            "gather rows": lambda x=x, keep=keep, k=k, d_=d_: x.reshape(-1, d_)[
                torch.nonzero_static(keep.reshape(-1), size=k).flatten()],
        }
        print("×".join(map(str, shape)) + ": " + " · ".join(f"{n} {graph_ms(f):.3f}" for n, f in rows.items()))


if __name__ == "__main__":
    main()
