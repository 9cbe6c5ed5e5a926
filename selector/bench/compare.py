"""python -m selector.bench.compare [--device cpu|cuda] [--grid TxHxWxD ...] [--retention R[,R...]] [--repeats N]

Milliseconds per method of selector.compare on random features (median of N after one warm-up), one column per
grid and retention, with the machine named; prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> int:
    from ..compare import METHODS, compress

    ap = argparse.ArgumentParser(prog="python -m selector.bench.compare", description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--grid", action="append", default=None, metavar="TxHxWxD")
    ap.add_argument("--retention", default="0.25", help="one retention or several, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args(argv)
    grids = [tuple(int(v) for v in g.split("x")) for g in (a.grid or ["16x27x27x1152", "64x27x27x1152"])]
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    try:
        rs = [float(v) for v in a.retention.split(",")]
    except ValueError:
        ap.error(f"--retention: numbers in (0, 1], comma-separated, got {a.retention!r}")
    print(f"device: {name} · torch {torch.__version__} · median of {a.repeats}")
    methods = a.methods.split(",")
    cols = [(g, r) for g in grids for r in rs]
    print("| method | " + " | ".join("×".join(map(str, g)) + f" r={r:g} ms" for g, r in cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    results: dict[str, list[float]] = {m: [] for m in methods}
    for g in grids:
        x = torch.randn(*g, generator=torch.Generator().manual_seed(0)).to(dev)
        for r in rs:
            for m in methods:
                compress(m, x, r)  # warm-up (kernels, strip tuning)
                times = []
                for _ in range(a.repeats):
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    t0 = time.perf_counter()
                    compress(m, x, r)
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    times.append((time.perf_counter() - t0) * 1e3)
                results[m].append(statistics.median(times))
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{v:.1f}" for v in results[m]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
