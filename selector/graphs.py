"""CUDA-graph replay of the selector for repeated shapes (short clips are launch-bound on a GPU).

A graph is captured once per (shape, dtype, device, K, config) and replayed; inputs are copied into a
static buffer and outputs cloned out, so Selections never alias each other. Imports torch only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import fields, replace

import torch

from .config import SelectorConfig
from .core import Clock, Selection, num_kept, rescale_for, run_selector

__all__ = ["graph_select", "clear_graphs"]

_GRAPHS: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, Selection, torch.Tensor]] = OrderedDict()
_LOCK = threading.Lock()
MAX_GRAPHS = 8


def clear_graphs() -> None:
    with _LOCK:
        _GRAPHS.clear()


def _capture(tokens: torch.Tensor, k: int, retention: float, cfg: SelectorConfig):
    static = tokens.clone()
    clock = Clock(tokens.device, False)
    stream = torch.cuda.Stream(tokens.device)
    stream.wait_stream(torch.cuda.current_stream(tokens.device))
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up: allocator pools, cuBLAS handles, lazy kernels
            run_selector(static, k, retention, cfg, clock)
    torch.cuda.current_stream(tokens.device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run_selector(static, k, retention, cfg, clock)
        amax = static.detach().abs().amax()
    return graph, static, out, amax


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
        graph, static, out, amax = entry
        static.copy_(tokens)
        graph.replay()
        scale = rescale_for(float(amax), tokens)  # the one host sync; raises on NaN/Inf
        if scale != 1.0:  # rare: values that need rescaling; the eager path does it
            return run_selector(tokens, k, retention, cfg, Clock(tokens.device, False), scale=scale)
        cloned = {f.name: getattr(out, f.name).clone() for f in fields(out)
                  if isinstance(getattr(out, f.name), torch.Tensor)}
    return replace(out, retention=retention, timings_ms={}, **cloned)
