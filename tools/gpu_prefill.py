"""Where the LLaVA-OneVision-0.5B prefill spends its time on a GPU, and what takes the launch overhead away.

python tools/gpu_prefill.py [--llm 0.5b] [--lengths 3147 1108 324] [--repeats 10]

Random weights with the real sizes (selector.bench.models.make), bf16. For each prompt length it times the stock
forward `model(inputs_embeds=..., use_cache=True, logits_to_keep=1)` (what selector.vlm does), the host's share
of it (wall time until the call returns, before the synchronisation), and `selector.vlm.GraphPrefill`
(the language model's prefill replayed from a CUDA graph captured per length bucket). It checks that the graph's
first-token logits equal the eager ones. Timings are honest; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selector.bench.models import make  # noqa: E402
from selector.prefill import GraphPrefill, bucket  # noqa: E402


def _med(fn, repeats: int) -> tuple[float, float]:
    """(median wall ms with the GPU synchronised, median ms until the call returned)."""
    walls, hosts = [], []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        walls.append((t2 - t0) * 1e3)
        hosts.append((t1 - t0) * 1e3)
    return statistics.median(walls), statistics.median(hosts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--llm", default="0.5b", choices=["0.5b", "7b"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[3147, 1108, 324])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="also time graphs of the torch.compile'd forward")
    a = ap.parse_args()
    dev, dtype = torch.device("cuda"), torch.bfloat16
    model, _ = make(real_sizes=True, device="cuda", llm=a.llm, dtype=dtype)
    model = model.to(dtype).eval()
    graph = GraphPrefill(model)
    comp = GraphPrefill(model, compile=True) if a.compile else None
    hidden = model.config.text_config.hidden_size
    print(f"{torch.cuda.get_device_name(dev)} · torch {torch.__version__} · LLaVA-OV-{a.llm} LLM · bf16 · "
          f"median of {a.repeats}")
    print(f"{'tokens':>7}{'eager ms':>10}{'host ms':>9}{'graph ms':>10}{'replay ms':>11}{'bucket':>8}"
          f"{'capture s':>11}{'max |Δlogit|':>14}" + (f"{'compiled ms':>13}{'capture s':>11}{'max |Δlogit|':>14}"
                                                        if comp else ""))
    gen = torch.Generator(device=dev).manual_seed(0)
    for n in a.lengths:
        embeds = torch.randn((1, n, hidden), generator=gen, device=dev, dtype=dtype) * 0.02
        mask = torch.ones((1, n), dtype=torch.long, device=dev)
        with torch.inference_mode():
            def eager(embeds=embeds, mask=mask):
                return model(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
            for _ in range(2):
                ref = eager()
            wall, host = _med(eager, a.repeats)
            t0 = time.perf_counter()
            out = graph(embeds)
            torch.cuda.synchronize()
            cap = time.perf_counter() - t0
            gwall, _ = _med(lambda embeds=embeds: graph(embeds), a.repeats)
            slot = graph._slots[bucket(n)]
            replay, _ = _med(slot.graph.replay, a.repeats)  # the graph alone: no copy in, no cache hand-over
            diff = (out.logits[0, -1].float() - ref.logits[0, -1].float()).abs().max().item()
            extra = ""
            if comp is not None:
                t0 = time.perf_counter()
                cout = comp(embeds)
                torch.cuda.synchronize()
                ccap = time.perf_counter() - t0
                cwall, _ = _med(lambda embeds=embeds: comp(embeds), a.repeats)
                cdiff = (cout.logits[0, -1].float() - ref.logits[0, -1].float()).abs().max().item()
                extra = f"{cwall:>13.2f}{ccap:>11.1f}{cdiff:>14.3g}"
        print(f"{n:>7}{wall:>10.2f}{host:>9.2f}{gwall:>10.2f}{replay:>11.2f}{bucket(n):>8}{cap:>11.1f}{diff:>14.3g}"
              + extra, flush=True)


if __name__ == "__main__":
    main()
