"""Interleaved A/B timing of two revisions of the selector in one process (same machine, same moment).

    git worktree add /tmp/base <rev>            # or: git archive <rev> selector | tar -x -C /tmp/base
    python tools/ab_selector.py --other /tmp/base [--device cuda] [--grid 16x27x27x1152 ...] [--rounds 5]

The other revision's `selector` package is loaded as `selector_other` next to this checkout's. Each round times
every grid on both (the order alternating every round), median wall ms of `select_tokens(x, r)` with the kept
rows gathered and the device synchronised (`--graph` replays CUDA graphs, as a VLM does); the table prints the
median over rounds and the ratio this/other. Prints one table; decides nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load_other(root: Path):
    init = root / "selector" / "__init__.py"
    if not init.exists():
        raise SystemExit(f"--other: no selector package under {root}")
    spec = importlib.util.spec_from_file_location("selector_other", init,
                                                  submodule_search_locations=[str(init.parent)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["selector_other"] = mod
    spec.loader.exec_module(mod)
    return mod


def _time(pkg, x: torch.Tensor, r: float, graph: bool, calls: int) -> float:
    def once() -> None:
        sel = pkg.select_tokens(x, r, timed=False, cuda_graph=graph)
        sel.tokens  # noqa: B018  (the rows, as a consumer reads them)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    for _ in range(3):
        once()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        once()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--other", type=Path, required=True, help="folder holding the other revision's selector/")
    p.add_argument("--device", default="cpu")
    p.add_argument("--grid", nargs="+", default=["16x27x27x1152", "16x14x14x896"])
    p.add_argument("--retention", type=float, default=0.35)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=0, help="calls per round (default: 200 on a GPU, 5 on a CPU)")
    p.add_argument("--graph", action="store_true", help="cuda_graph=True (GPU)")
    a = p.parse_args(argv)
    import selector

    other = _load_other(a.other)
    dev = torch.device(a.device)
    calls = a.calls or (200 if dev.type == "cuda" else 5)
    gen = torch.Generator().manual_seed(0)
    grids = [tuple(int(v) for v in g.lower().split("x")) for g in a.grid]
    xs = {g: torch.randn(g, generator=gen).to(dev) for g in grids}
    for g, x in xs.items():  # same selections before any timing
        mine, theirs = selector.select_tokens(x, a.retention), other.select_tokens(x, a.retention)
        if not torch.equal(mine.indices, theirs.indices):
            raise SystemExit(f"the revisions select differently on {g}")
    res: dict[tuple, dict[str, list[float]]] = {g: {"this": [], "other": []} for g in grids}
    for i in range(a.rounds):
        order = [("this", selector), ("other", other)][:: 1 if i % 2 == 0 else -1]
        for g, x in xs.items():
            for name, pkg in order:
                res[g][name].append(_time(pkg, x, a.retention, a.graph, calls))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"# {' '.join(sys.argv)} · {name} · torch {torch.__version__} · r={a.retention} · "
          f"{a.rounds} rounds × {calls} calls, median ms (rows gathered, synchronised)")
    print(f"{'grid':<18}{'this ms':>10}{'other ms':>10}{'this/other':>12}")
    for g in grids:
        mine, theirs = statistics.median(res[g]["this"]), statistics.median(res[g]["other"])
        print(f"{'x'.join(map(str, g)):<18}{mine:>10.3f}{theirs:>10.3f}{mine / theirs:>12.3f}")


if __name__ == "__main__":
    main()
