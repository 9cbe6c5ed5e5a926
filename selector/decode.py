"""Greedy decoding on a static KV cache, the one-token step replayed from a CUDA graph (every family's language model).

Why: after the prefill, an answer is one language-model step per token. Eagerly each step launches every layer's
kernels from Python on a cache that grows (and a host sync per token): 15–20 ms a token on an H100 for models
whose weights are read in 1–5 ms. Here the step runs on a `StaticCache` of `bucket(prompt + max_new_tokens + 1)`
rows and is captured once per bucket as a CUDA graph, which then replays a whole step in one launch.

How, with the stock modules: the graph reads everything it needs from device buffers it also advances itself —
the token it embeds (the previous step's argmax, written by the graph), the cache position, the position ids
(1-D, or the same text position on the three axes of the Qwen families' 3-D RoPE), and the attention mask over
the cache's rows (`rows <= position`, computed in the graph; transformers takes a 4-D mask as it is). The
StaticCache's layers write each step's key and value at their own device-side length counter. So the host only
replays: it queues step i+1 before it reads token i (through pinned memory),
the GPU never waits for the host between steps, and an answer that ends at EOS costs at most one extra step.
The prefill's keys and values are copied into the static cache once (one `update` per layer, the cache's own
path). Each token is the argmax of the same logits as in the eager loop; rounding may differ where the kernels
differ (the padded attention runs SDPA with a mask), so the CUDA tests compare with the eager loop token by token.

Models whose layers are not all full causal attention (sliding windows), or a prompt + answer longer than
`max_rows`, fall back to the eager loop. At most `max_graphs` buckets are kept (least recently used dropped): each
holds its cache (2 · layers · kv_heads · head_dim · rows · 2 bytes: 24 MiB for Qwen2-0.5B at 2048 rows, 112 MiB for
Qwen2-7B) and its graph's activations (a few MiB: one token). `graphs=False` runs the same step eagerly (testable on a
CPU).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch

from .prefill import _kv, bucket

__all__ = ["StaticDecoder"]


class StaticDecoder:
    """`decode(past, token, length, max_new_tokens, position, eos, emit, check)` → the greedy tokens, as
    `VLM._decode`'s eager loop gives them, on a static cache (see the module notes)."""

    def __init__(self, model: Any, graphs: bool | None = None, max_graphs: int = 4, max_rows: int = 32768,
                 compile: bool = False) -> None:
        self.model = model
        self.lm = model.model.language_model
        self.head = model.lm_head
        self.embed = model.get_input_embeddings()
        self.config = model.config.get_text_config()
        types = set(getattr(self.config, "layer_types", None) or ["full_attention"])
        attn = getattr(self.config, "_attn_implementation", None) or "eager"
        if types != {"full_attention"} or not (attn == "sdpa" or attn.startswith("flash_attention")):
            raise ValueError(f"the static-cache decode needs full causal attention through SDPA; this model has "
                             f"layers {sorted(types)} and attention {attn!r}")
        self.device = next(model.parameters()).device
        self.graphs = self.device.type == "cuda" if graphs is None else graphs
        if self.graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.max_graphs, self.max_rows = max_graphs, max_rows
        # compile: the step through torch.compile (its small kernels fused) before the capture; one compilation per
        # bucket at its first answer (measured in `python -m selector.bench_vlm --decode compiled`)
        self._run_step = torch.compile(self._step, fullgraph=False, dynamic=False) if compile else self._step
        self._slots: OrderedDict[tuple[int, int], SimpleNamespace] = OrderedDict()
        self._pool = None
        self.disabled: str | None = None  # why the graphs were turned off, if they were
        self.captures = 0
        self.last_capture_ms = 0.0

    def fits(self, length: int, max_new_tokens: int) -> bool:
        """Whether an answer of max_new_tokens after a prompt of `length` rows runs here (else the eager loop)."""
        return self.disabled is None and length + max_new_tokens + 1 <= self.max_rows

    # ---- one step -----------------------------------------------------------------------------------------------

    def _step(self, s: SimpleNamespace) -> None:
        """Embed s.tok, run the language model one row at s.pos, write the argmax into s.tok and s.out[s.i],
        advance s.pos, s.ids and s.i. Tensor ops only (captured as a graph)."""
        s.mask.copy_((s.rows <= s.pos).view(1, 1, 1, -1))
        out = self.lm(inputs_embeds=self.embed(s.tok), position_ids=s.ids, past_key_values=s.cache,
                      attention_mask=s.mask, use_cache=True)
        nxt = self.head(out.last_hidden_state[:, -1]).argmax(-1)
        s.tok.copy_(nxt.view(1, 1))
        s.out.index_copy_(0, s.i, nxt.view(1))
        s.pos.add_(1)
        s.ids.add_(1)
        s.i.add_(1)

    def _slot(self, rows: int, axes: int) -> SimpleNamespace:
        key = (rows, axes)
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
            return slot
        from transformers import StaticCache

        dev = self.device
        long = {"dtype": torch.long, "device": dev}
        slot = SimpleNamespace(
            cache=StaticCache(config=self.config, max_cache_len=rows), tok=torch.zeros((1, 1), **long),
            pos=torch.zeros(1, **long), ids=torch.zeros((axes, 1, 1) if axes == 3 else (1, 1), **long),
            i=torch.zeros(1, **long), out=torch.zeros(rows, **long), rows=torch.arange(rows, device=dev),
            mask=torch.zeros((1, 1, 1, rows), dtype=torch.bool, device=dev), graph=None,
            host=torch.zeros(rows, dtype=torch.long, pin_memory=self.graphs))
        self._slots[key] = slot
        while len(self._slots) > self.max_graphs:
            self._slots.popitem(last=False)
        return slot

    def _load(self, s: SimpleNamespace, past: Any, token: torch.Tensor, length: int, position: int | None) -> None:
        """The prefill's keys and values (the prompt's `length` rows) into the static cache, the first generated
        token as the next input, at position `length` (1-D) or `position` (the 3-D RoPE text position)."""
        n = length
        for layer in s.cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.cumulative_length.zero_()
        for i, (k, v) in enumerate(_kv(past)):
            s.cache.update(k[:, :, :n], v[:, :, :n], i)
        s.tok.copy_(token.view(1, 1).to(s.tok))
        s.pos.fill_(n)
        s.ids.fill_(n if position is None else position)
        s.i.zero_()

    def _capture(self, s: SimpleNamespace) -> None:
        """Capture s's step as a CUDA graph; the warm-up steps run on a copy of the state and are undone."""
        t0 = time.perf_counter()
        saved = [t.clone() for t in (s.tok, s.pos, s.ids, s.i)]
        lengths = [layer.cumulative_length.clone() for layer in s.cache.layers]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._run_step(s)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._run_step(s)
        for t, v in zip((s.tok, s.pos, s.ids, s.i), saved, strict=True):  # undo the warm-up steps
            t.copy_(v)
        for layer, n in zip(s.cache.layers, lengths, strict=True):
            layer.cumulative_length.copy_(n)
        s.graph = graph
        self.captures += 1
        torch.cuda.synchronize()
        self.last_capture_ms = (time.perf_counter() - t0) * 1e3

    # ---- the answer ---------------------------------------------------------------------------------------------

    def decode(self, past: Any, token: torch.Tensor, length: int, max_new_tokens: int, position: int | None,
               eos: set[int], emit: Callable[[list[int]], None] | None = None,
               check: Callable[[str], None] | None = None) -> list[int]:
        """Greedy tokens after the prefill: `token` is the first (already chosen), `length` the prompt's rows in
        `past`, `position` the first generated token's 3-D RoPE text position (None: 1-D positions)."""
        generated = [int(token)]
        if emit is not None:
            emit(generated)
        if len(generated) >= max_new_tokens or generated[-1] in eos:
            return generated
        rows = bucket(length + max_new_tokens + 1)
        s = self._slot(rows, 1 if position is None else 3)
        self._load(s, past, token, length, position)
        self.last_capture_ms = 0.0
        if self.graphs and s.graph is None:
            try:
                with torch.cuda.device(self.device):
                    self._capture(s)
            except torch.cuda.OutOfMemoryError:
                self.release()
                raise
            except RuntimeError as e:  # a model whose step cannot be captured: eager steps from now on
                self.disabled = str(e).splitlines()[0]
                self.release()
                raise
        run = s.graph.replay if s.graph is not None else (lambda: self._step(s))
        ready = torch.cuda.Event() if s.graph is not None else None
        run()  # step 1 queued
        done = 0  # steps whose token the host has read
        while True:
            if check is not None:
                check(f"generating the answer ({len(generated)} tokens so far)")
            more = len(generated) + 1 < max_new_tokens
            if ready is not None:
                s.host[done : done + 1].copy_(s.out[done : done + 1], non_blocking=True)
                ready.record()
                if more:
                    run()  # the next step runs while the host waits for this token
                ready.synchronize()
                tok = int(s.host[done])
            else:
                tok = int(s.out[done])
                if more:
                    run()
            done += 1
            generated.append(tok)
            if emit is not None:
                emit(generated)
            if not more or tok in eos:
                return generated

    def release(self) -> None:
        """Drop every bucket's cache and graph (the next answer makes its bucket again)."""
        self._slots.clear()
        self._pool = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
