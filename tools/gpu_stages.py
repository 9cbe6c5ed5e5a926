"""Per-stage GPU timings of the selector (each stage captured in its own CUDA graph and replayed).

python3 tools/gpu_stages.py  — prints ms per stage for 16×27×27×1152, fp32, TF32 off and on.
"""
import statistics

import torch

from selector import SelectorConfig, allocate, maps
from selector.core import num_kept
from selector.fast import entropy_banded


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
        a.record(); g.replay(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def main():
    cfg = SelectorConfig()
    x = torch.randn(16, 27, 27, 1152, device="cuda")
    t_, h_, w_, d_ = x.shape
    k = num_kept(0.35, t_ * h_ * w_)
    xn = maps.normalize(x)
    score = torch.rand(t_, h_ * w_, device="cuda")
    budgets, _, _ = allocate.frame_budgets(score, k, cfg)
    cells = allocate.cell_ids(h_, w_, cfg.grid, x.device)
    keep, rank, quota = allocate.pick(score, budgets, cells, cfg)
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        rows = {
            "normalize": lambda: maps.normalize(x),
            "entropy_banded": lambda: entropy_banded(xn, cfg),
            "entropy_reference": lambda: maps.entropy_map(xn, cfg),
            "gradient": lambda: maps.gradient_map(x),
            "budgets": lambda: allocate.frame_budgets(score, k, cfg),
            "pick": lambda: allocate.pick(score, budgets, cells, cfg),
            "gather": lambda: x.reshape(-1, d_)[torch.nonzero_static(keep.reshape(-1), size=k).flatten()],
        }
        print(f"TF32 {'on ' if tf32 else 'off'}: " + " · ".join(f"{n} {graph_ms(f):.3f}" for n, f in rows.items()))
    torch.backends.cuda.matmul.allow_tf32 = False
    # inside entropy_banded
    from selector.fast import band_layout
    parts, valid, n_valid, front = band_layout(t_, h_, w_, cfg.window, cfg.temporal_window, cfg.past_window, "cuda")
    n = t_ * h_ * w_
    buf = xn.new_zeros((front + n + 2 * w_ + w_, d_))
    buf[front: front + n] = xn.reshape(n, d_)
    q = buf[front: front + n].view(t_ * h_, w_, d_)
    def bmms():
        for dt, nrows, col in parts:
            start = front + dt * h_ * w_ - (nrows // 2) * w_
            band = buf.as_strided((t_ * h_, nrows * w_, d_), (w_ * d_, d_, 1), start * d_)
            torch.bmm(q, band.transpose(1, 2))
    print(f"  bmm only (fp32): {graph_ms(bmms):.3f}")
    def pad():
        b2 = xn.new_zeros((front + n + 3 * w_, d_)); b2[front: front + n] = xn.reshape(n, d_)
    print(f"  pad copy: {graph_ms(pad):.3f}")


if __name__ == "__main__":
    main()
