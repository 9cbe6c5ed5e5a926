"""The language model's prefill replayed from CUDA graphs, one per length bucket (LLaVA-OneVision's Qwen2 LLMs).

Why: in eager transformers a small LLM's prefill is bound by kernel launches, not by its tokens (Qwen2-0.5B on
an H100: ~26 ms whether it reads 324 or 3147 tokens), so dropping video tokens shortened nothing. A graph
replays all the layer kernels at once.

How, with the stock modules and no patching: the prompt's embeddings are copied into a static buffer of
`bucket(n)` rows (n rounded up; rows after the n real ones are zeros). Attention is causal, so the padded rows
come after every real row and change none of them: the real rows get the same positions (0..n-1), the same
attention and the same hidden states as an unpadded forward. The graph runs the stock language model with
`use_cache=True` on the buffer and the mask mapping {"full_attention": None}, the form transformers' own
`generate` may pass in: SDPA then runs with is_causal (flash attention). Left to build its masks, transformers
would check the positions for packed sequences, which needs the host, and under capture it materializes an
L×L mask instead: measured on an H100, 6283 tokens of Qwen2-0.5B took 38.5 ms that way against 24.4 eagerly.
So only models whose layers all use full causal attention through SDPA or flash attention get graphs. The graph
then picks the hidden state of row n-1 (a static index) and applies the stock `lm_head`. After a replay the first
n positions of every layer's keys and values are copied out of the graph's memory into a fresh `DynamicCache`,
so decoding goes on exactly as after the stock forward and the next replay cannot overwrite it. A capture that
fails (a model whose forward synchronises, say) turns the graphs off with a warning and the stock forward answers.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import torch

__all__ = ["GraphPrefill", "bucket"]

#: smallest bucket step; steps grow with the length so that padding stays under 1/16 of it
MIN_STEP = 64


def bucket(n: int) -> int:
    """Rows of the static buffer for n prompt tokens: n rounded up to a multiple of max(64, 2^(⌊log2 n⌋-4))
    (e.g. 324 → 384, 1108 → 1152, 3147 → 3200, 6283 → 6400): < 1/16 padding beyond 1024 tokens (a
    compute-bound 7B prefill pays the padded rows: 1/8 cost it ~6 % at full length) and 16 buckets per
    doubling of the length."""
    if n < 1:
        raise ValueError(f"a prompt has at least one token, got {n}")
    step = max(MIN_STEP, 1 << max(0, int(math.floor(math.log2(n))) - 4))
    return -(-n // step) * step


def _kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) of a transformers DynamicCache (5.x: .layers; 4.x: key_cache/value_cache)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


class GraphPrefill:
    """`prefill(embeds)` → an object with `.logits` (1, 1, V) of the last row and `.past_key_values`, like
    `model(inputs_embeds=embeds, attention_mask=ones, use_cache=True, logits_to_keep=1)`.

    `graphs=False` runs the same padded forward eagerly (the padding and cache hand-over, testable on a CPU).
    At most `max_graphs` buckets are kept (least recently used dropped); all share one memory pool, which is
    safe because every output is copied out before the next replay."""

    def __init__(self, model: Any, graphs: bool | None = None, max_graphs: int = 16, compile: bool = False):
        self.model = model
        self.lm = model.model.language_model
        self.head = model.lm_head
        self.config = model.config.text_config
        types = set(getattr(self.config, "layer_types", None) or ["full_attention"])
        attn = getattr(self.config, "_attn_implementation", None) or "eager"
        if types != {"full_attention"} or not (attn == "sdpa" or attn.startswith("flash_attention")):
            raise ValueError(f"padded prefill needs full causal attention through SDPA or flash attention; this "
                             f"model has layers {sorted(types)} and attention {attn!r}")
        self._masks = {"full_attention": None}  # causal, no mask tensor: SDPA's is_causal (see the module notes)
        dev = next(model.parameters()).device
        self.graphs = dev.type == "cuda" if graphs is None else graphs
        if self.graphs and dev.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.max_graphs = max_graphs
        # compile: the forward through torch.compile (dynamic lengths, one compilation) before the capture, so
        # the graphs replay fused kernels; experimental, measured in tools/gpu_prefill.py --compile
        self._fwd = torch.compile(self._forward, dynamic=True) if compile else self._forward
        self._slots: OrderedDict[int, SimpleNamespace] = OrderedDict()
        self._pool = None
        self.disabled: str | None = None  # why the graphs were turned off, if they were
        self.captures = 0
        self.last_capture_ms = 0.0  # wall time the last call spent capturing a new bucket's graph (0: replayed)

    def _forward(self, buf: torch.Tensor, last: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out = self.lm(inputs_embeds=buf, attention_mask=self._masks, use_cache=True)
        hidden = out.last_hidden_state.index_select(1, last)
        return self.head(hidden), out.past_key_values

    def _slot(self, rows: int, like: torch.Tensor) -> SimpleNamespace:
        slot = self._slots.get(rows)
        if slot is not None:
            self._slots.move_to_end(rows)
            return slot
        buf = torch.zeros((1, rows, like.shape[-1]), dtype=like.dtype, device=like.device)
        last = torch.zeros(1, dtype=torch.long, device=like.device)
        slot = SimpleNamespace(buf=buf, last=last, graph=None, logits=None, kv=None)
        if self.graphs:
            with torch.cuda.device(like.device):  # the model's GPU, whichever is current
                self._capture(slot)
        self._slots[rows] = slot
        while len(self._slots) > self.max_graphs:
            self._slots.popitem(last=False)
        return slot

    def _capture(self, slot: SimpleNamespace) -> None:
        buf, last = slot.buf, slot.last
        t0 = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (cuBLAS handles, lazy inits, compilation)
                self._fwd(buf, last)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits, cache = self._fwd(buf, last)
        slot.graph, slot.logits, slot.kv = graph, logits, _kv(cache)
        self.captures += 1
        torch.cuda.synchronize()
        self.last_capture_ms = (time.perf_counter() - t0) * 1e3

    def __call__(self, embeds: torch.Tensor) -> SimpleNamespace:
        if embeds.ndim != 3 or embeds.shape[0] != 1:
            raise ValueError(f"one prompt at a time: embeds must be (1, n, hidden), got {tuple(embeds.shape)}")
        if self.disabled is not None:
            return self._stock(embeds)
        n = embeds.shape[1]
        self.last_capture_ms = 0.0
        try:
            slot = self._slot(bucket(n), embeds)
        except torch.cuda.OutOfMemoryError:  # no room for one more graph: free them all, answer eagerly this time
            self.release()
            warnings.warn("out of GPU memory while capturing a prefill graph: the graphs were freed, this prompt "
                          "runs through the stock forward", RuntimeWarning, stacklevel=2)
            return self._stock(embeds)
        except RuntimeError as e:  # a capture the model does not allow: answer eagerly from now on
            self.disabled = str(e).splitlines()[0]
            self.release()
            warnings.warn(f"CUDA-graph prefill turned off ({self.disabled}); using the stock forward",
                          RuntimeWarning, stacklevel=2)
            return self._stock(embeds)
        slot.buf[:, :n].copy_(embeds)
        slot.buf[:, n:].zero_()
        slot.last.fill_(n - 1)
        if slot.graph is not None:
            slot.graph.replay()
            logits, kv = slot.logits, slot.kv
        else:
            logits, cache = self._fwd(slot.buf, slot.last)
            kv = _kv(cache)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.config)
        for i, (k, v) in enumerate(kv):  # the real rows only, copied out of the graph's memory
            cache.update(k[:, :, :n].clone(), v[:, :, :n].clone(), i)
        return SimpleNamespace(logits=logits.clone(), past_key_values=cache)

    def release(self) -> None:
        """Drop every captured graph and its memory pool (the next prompt captures its bucket again)."""
        self._slots.clear()
        self._pool = None
        if self.graphs:
            torch.cuda.empty_cache()

    def _stock(self, embeds: torch.Tensor) -> Any:
        return self.model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long,
                                                                          device=embeds.device),
                          use_cache=True, logits_to_keep=1)
