"""CUDA-graph replay of the selector for repeated shapes (short clips are launch-bound on a GPU).

A graph is captured once per (shape, dtype, device, K, config) and replayed; inputs are copied into a
static buffer, and the graph itself packs every output into one byte buffer that is cloned out in a
single copy after the replay, so Selections never alias each other. Imports torch only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import fields, replace

import torch

from .config import SelectorConfig
from .core import Clock, Selection, num_kept, rescale_for, run_selector, stats_amax

__all__ = ["graph_select", "clear_graphs"]

_GRAPHS: OrderedDict[tuple, tuple] = OrderedDict()
_LOCK = threading.Lock()
MAX_GRAPHS = 8


def clear_graphs() -> None:
    with _LOCK:
        _GRAPHS.clear()


def _layout(out: Selection) -> list[tuple[str, torch.dtype, tuple[int, ...], int, int]]:
    """(field, dtype, shape, byte offset, bytes) of every tensor of a Selection in the packed buffer."""
    rows, off = [], 0
    for f in fields(out):
        v = getattr(out, f.name)
        if isinstance(v, torch.Tensor):
            nbytes = v.numel() * v.element_size()
            rows.append((f.name, v.dtype, tuple(v.shape), off, nbytes))
            off += -(-nbytes // 16) * 16  # 16-byte aligned, so every slice can be viewed as its dtype
    return rows


def _views(buf: torch.Tensor, layout) -> dict[str, torch.Tensor]:
    return {name: buf[off:off + nb].view(dtype).view(shape) for name, dtype, shape, off, nb in layout}


def _capture(tokens: torch.Tensor, k: int, retention: float, cfg: SelectorConfig):
    static = tokens.clone()
    clock = Clock(tokens.device, False)
    stream = torch.cuda.Stream(tokens.device)
    stream.wait_stream(torch.cuda.current_stream(tokens.device))
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up: allocator pools, cuBLAS handles, lazy kernels
            probe = run_selector(static, k, retention, cfg, clock)
    torch.cuda.current_stream(tokens.device).wait_stream(stream)
    layout = _layout(probe)
    size = max(16, layout[-1][3] + layout[-1][4])
    packed = torch.empty(size, dtype=torch.uint8, device=tokens.device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        stats: list[torch.Tensor] = []
        out = run_selector(static, k, retention, cfg, clock, stats_out=stats)
        if stats:  # the fused path's row statistics: max |x|, or NaN when any value is NaN/Inf
            amax = stats_amax(stats[0])
        else:
            amax = static.detach().abs().amax()
        dst = _views(packed, layout)
        srcs = [getattr(out, name) for name, *_ in layout]
        for dtype in {t.dtype for t in srcs}:  # one multi-tensor copy per dtype
            pairs = [(dst[name], getattr(out, name)) for name, *_ in layout if getattr(out, name).dtype == dtype]
            torch._foreach_copy_([a for a, _ in pairs], [b for _, b in pairs])
    return graph, static, out, amax, packed, layout


def graph_select(tokens: torch.Tensor, retention: float, cfg: SelectorConfig) -> Selection:
    """select_tokens through a captured CUDA graph; one host sync at the end (the NaN/Inf check)."""
    t_, h_, w_, _ = tokens.shape
    k = num_kept(retention, t_ * h_ * w_)
    key = (tuple(tokens.shape), tokens.dtype, str(tokens.device), k, cfg)
    with _LOCK:
        entry = _GRAPHS.get(key)
        if entry is None:
            entry = _capture(tokens, k, retention, cfg)
            _GRAPHS[key] = entry
            while len(_GRAPHS) > MAX_GRAPHS:
                _GRAPHS.popitem(last=False)
        else:
            _GRAPHS.move_to_end(key)
        graph, static, out, amax, packed, layout = entry
        static.copy_(tokens)
        graph.replay()
        buf = packed.clone()  # one copy out; the Selection's tensors are views of it
        scale = rescale_for(float(amax), tokens)  # the one host sync; raises on NaN/Inf
    if scale != 1.0:  # rare: values that need rescaling; the eager path does it
        return run_selector(tokens, k, retention, cfg, Clock(tokens.device, False), scale=scale)
    return replace(out, retention=retention, timings_ms={}, **_views(buf, layout))
