"""CUDA-graph replay of the selector for repeated shapes (short clips are launch-bound on a GPU).

A graph is captured once per (shape, dtype, device, K, config) and replayed. On the fused GPU path the
kernels read the features at an address held in a small device table, refreshed before each replay: the
caller's tensor is read in place (no copy in). Elsewhere inputs are copied into a static buffer. The kept
rows are gathered from the caller's tensor when asked for (`Selection.tokens`), outside the graph. The
other outputs are packed by the graph into one byte buffer, cloned out after the replay (one copy instead
of one per field), so Selections never alias each other. `Graphed` gives a backend this runner
(`select_graphed`). Imports torch only.
"""

from __future__ import annotations

import threading
from dataclasses import fields, replace

import torch

from ..config import SelectorConfig
from ..lru import LRU
from ..method.pipeline import Clock, Selection, num_kept, rescale_for, run_selector
from ..method.stages import Backend

__all__ = ["Graphed", "graph_select", "clear_graphs"]


class Graphed(Backend):
    """A backend whose selections can be captured as CUDA graphs. `prepare` gives the tensor the stages read
    (e.g. an aligned copy of an odd view); `addressed(tab, cfg)` the same backend reading its features at the
    address held in the device tensor tab (nothing copied in before a replay), or None where it cannot."""

    def prepare(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def addressed(self, tab: torch.Tensor, cfg: SelectorConfig) -> Backend | None:
        return None

    def select_graphed(self, tokens: torch.Tensor, retention: float, cfg: SelectorConfig) -> Selection:
        return graph_select(tokens, retention, cfg, self)

MAX_GRAPHS = 8
_GRAPHS = LRU(MAX_GRAPHS)
_LOCK = threading.Lock()  # capture and replay of one graph at a time


def clear_graphs() -> None:
    with _LOCK:
        _GRAPHS.clear()


_ALIGN = 16


def _layout(out: Selection) -> tuple[list[tuple], int, list[torch.dtype]]:
    """(field, dtype, shape, stride, element offset) of every tensor of a Selection but its `source` (the
    input), in field order, at 16-byte aligned offsets of one byte buffer; the buffer's size; the dtypes."""
    rows, off = [], 0
    for f in fields(out):
        v = getattr(out, f.name)
        if isinstance(v, torch.Tensor) and f.name != "source":
            shape = tuple(v.shape)
            stride = torch.empty(shape, device="meta").stride()
            rows.append((f.name, v.dtype, shape, stride, off // v.element_size()))
            off += -(-(v.numel() * v.element_size()) // _ALIGN) * _ALIGN
    return rows, max(off, _ALIGN), sorted({r[1] for r in rows}, key=str)


def _views(buf: torch.Tensor, layout) -> dict[str, torch.Tensor]:
    """The Selection's tensors as typed views of the one byte buffer (one op per field: this runs on every
    call)."""
    typed = {dtype: buf.view(dtype) for dtype in layout[2]}
    return {name: typed[dtype].as_strided(shape, stride, off) for name, dtype, shape, stride, off in layout[0]}


def _capture(tokens: torch.Tensor, k: int, retention: float, cfg: SelectorConfig, backend: Graphed,
             table_in_graph: bool = True):
    # a backend that reads by address: its kernels read the features at an address held in a device table; the
    # graph's first node copies it from a pinned host buffer the caller fills before each replay. Nothing is
    # copied in
    tab = torch.tensor([tokens.data_ptr()], dtype=torch.int64, device=tokens.device)
    reader = backend.addressed(tab, cfg)
    clock = Clock(tokens.device, False)
    if reader is not None:
        static = tokens  # gives shape and dtype only: the graph reads through the table
        host = torch.tensor([tokens.data_ptr()], dtype=torch.int64).pin_memory()
    else:
        reader, static, tab, host = backend, tokens.clone(), None, None
    stream = torch.cuda.Stream(tokens.device)
    stream.wait_stream(torch.cuda.current_stream(tokens.device))
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up: allocator pools, cuBLAS handles, lazy kernels
            probe = run_selector(static, k, retention, cfg, reader, clock)[0]
    torch.cuda.current_stream(tokens.device).wait_stream(stream)
    layout = _layout(probe)
    packed = torch.empty(layout[1], dtype=torch.uint8, device=tokens.device)
    graph = torch.cuda.CUDAGraph()
    table_in_graph = table_in_graph and tab is not None
    try:
        with torch.cuda.graph(graph):
            if table_in_graph:
                tab.copy_(host, non_blocking=True)
            out, amax = run_selector(static, k, retention, cfg, reader, clock)
            if amax is None:  # the backend's own max |x| (NaN when any value is NaN/Inf), else one reduction
                amax = static.detach().abs().amax()
            dst = _views(packed, layout)
            names = [row[0] for row in layout[0]]
            torch._foreach_copy_([dst[n] for n in names], [getattr(out, n) for n in names])
    except RuntimeError:
        if not table_in_graph:
            raise
        torch.cuda.synchronize(tokens.device)
        return _capture(tokens, k, retention, cfg, backend, table_in_graph=False)  # copy the table before replays
    out = replace(out, source=None)  # each replay's Selection names its own input
    if tab is not None:
        static = None  # the caller's tensor is not kept alive by the cache
    return graph, static, out, amax, packed, layout, tab, host, table_in_graph


def graph_select(tokens: torch.Tensor, retention: float, cfg: SelectorConfig, backend: Graphed) -> Selection:
    """select_tokens through a captured CUDA graph of backend's stages; one host sync at the end (the NaN/Inf
    check)."""
    t_, h_, w_, _ = tokens.shape
    k = num_kept(retention, t_ * h_ * w_)
    key = (backend.name, tuple(tokens.shape), tokens.dtype, str(tokens.device), k, cfg)
    with _LOCK:
        entry = _GRAPHS.get(key)
        if entry is None:
            entry = _capture(backend.prepare(tokens), k, retention, cfg, backend)
            _GRAPHS.put(key, entry)
        graph, static, out, amax, packed, layout, tab, host, table_in_graph = entry
        if tab is not None:
            src = backend.prepare(tokens)  # e.g. the fused kernels assume 16-byte aligned rows
            host.numpy()[:] = (src.data_ptr(),)  # read by the graph's first node
            if not table_in_graph:
                tab.copy_(host, non_blocking=True)  # ordered before the replay on this stream
        else:
            static.copy_(tokens)
        graph.replay()
        buf = packed.clone()  # one copy for all the other fields (they are views of it)
        # the Selection is built while the GPU runs; the one host sync comes last (src stays alive until then)
        views = {"rows": None, **_views(buf, layout)}  # rows: packed with grid fusion, else gathered on demand
        sel = replace(out, retention=retention, timings_ms={}, source=tokens, **views)
        scale = rescale_for(float(amax), tokens)
    if scale != 1.0:  # rare: values that need rescaling; the eager path does it
        return run_selector(tokens, k, retention, cfg, backend, Clock(tokens.device, False), scale)[0]
    return sel
