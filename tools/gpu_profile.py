"""Where the time of one selector call goes on the GPU machine: host vs device, graph vs eager.

python3 tools/gpu_profile.py [--grid TxHxWxD ...] [--dtype float32 bfloat16] [--retention 0.35] [--no-host]
— per grid and dtype: wall ms per call (host clock, synchronized) for the CUDA-graph and eager fused paths,
the device time of one graph replay, the host parts of a call, and the kernels by device time.
"""

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from selector import SelectorConfig, select_tokens
from selector.bench.selector import _timer


def wall(fn, n=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def host_parts(x, cfg):
    """Replay alone (synchronized), the table refresh, the output clones, the views + dataclass replace."""
    from dataclasses import replace

    from selector.backends import graphs
    from selector.method.pipeline import num_kept

    select_tokens(x, 0.35, cfg, timed=False, cuda_graph=True)
    k = num_kept(0.35, x.shape[0] * x.shape[1] * x.shape[2])
    graph, _, out, _, packed, layout, tab, host, in_graph = graphs._GRAPHS.get(
        (tuple(x.shape), x.dtype, str(x.device), k, cfg))
    rows = torch.empty((k, x.shape[-1]), dtype=x.dtype, device=x.device)

    def refresh():
        host.numpy()[:] = (x.data_ptr(), rows.data_ptr())
        tab.copy_(host, non_blocking=True)

    buf = packed.clone()

    def back_to_back(n=50):
        """Device time of one replay when replays queue back to back (no host gap between them)."""
        graph.replay()
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(n):
            graph.replay()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / n

    def events(fn, n=50):
        """Like the bench (its own timer): CUDA events around one call, median."""
        return statistics.median(_timer(x.device, fn, n))

    return {
        "bench-style select_tokens": events(lambda: select_tokens(x, 0.35, cfg, timed=False, cuda_graph=True)),
        "bench-style replay": events(graph.replay),
        "replay back to back": back_to_back(),
        "select_tokens": wall(lambda: select_tokens(x, 0.35, cfg, timed=False, cuda_graph=True)),
        "replay": wall(graph.replay),
        "table": wall(refresh),
        "table in graph": in_graph,
        "clone": wall(packed.clone),
        "rows alloc": wall(lambda: torch.empty((k, x.shape[-1]), dtype=x.dtype, device=x.device)),
        "views+replace": wall(lambda: replace(out, retention=0.35, timings_ms={}, **graphs._views(buf, layout))),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", nargs="+", default=["16x14x14x896", "16x27x27x1152"])
    ap.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--retention", type=float, default=0.35)
    ap.add_argument("--no-host", action="store_true", help="skip the host parts of a graph call")
    a = ap.parse_args()
    cfg, r = SelectorConfig(), a.retention
    for grid in a.grid:
        shape = tuple(int(v) for v in grid.split("x"))
        for dtype in (getattr(torch, d) for d in a.dtype):
            x = torch.randn(*shape, device="cuda").to(dtype)
            g = wall(lambda x=x: select_tokens(x, r, cfg, timed=False, cuda_graph=True))
            e = wall(lambda x=x: select_tokens(x, r, cfg, timed=False))
            # eager calls: the profiler sees every kernel (a graph replay shows as one row)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(10):
                    select_tokens(x, r, cfg, timed=False)
                torch.cuda.synchronize()
            ka = prof.key_averages()
            dev = sum(k.self_device_time_total for k in ka) / 10 / 1e3
            print(f"{'×'.join(map(str, shape))} {str(dtype)[6:]} r={r}: graph {g:.3f} ms · eager {e:.3f} ms · "
                  f"device time per eager call {dev:.3f} ms")
            rows = sorted((k for k in ka if k.self_device_time_total > 0), key=lambda k: -k.self_device_time_total)
            for k in rows[:12]:
                print(f"    {k.self_device_time_total / 10 / 1e3:8.4f} ms  x{k.count // 10:<3} {k.key[:90]}")
            if not a.no_host:
                parts = host_parts(x, cfg)
                txt = [f"{k} {v:.3f} ms" if isinstance(v, float) else f"{k} {v}" for k, v in parts.items()]
                print("  host parts of a graph call: " + " · ".join(txt))


if __name__ == "__main__":
    main()
