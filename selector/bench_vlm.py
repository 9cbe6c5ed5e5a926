"""Time to first token of LLaVA-OneVision with all, 35 % and 10 % of the video tokens.

python -m selector.bench_vlm [--frames 16 32] [--device cuda]

The model has the real LLaVA-OneVision-0.5B sizes (SigLIP-SO400M at 384 px + Qwen2-0.5B) with random
weights, built here from configs: nothing is downloaded. Timings are honest; the answers are not.
"""

from __future__ import annotations

import argparse
import statistics
import threading

import numpy as np
import torch

from .tiny_vlm import make
from .vlm import VLM


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m selector.bench_vlm", description=__doc__)
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    model, processor = make(real_sizes=True, device=str(dev))
    model = model.to(dtype)
    vlm = VLM("random LLaVA-OV-0.5B sizes", model, processor, dev, dtype, threading.Lock())
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {name} · {dtype} · torch {torch.__version__} · median of {a.repeats} · greedy, 8 new tokens")
    print(f"{'frames':>6}{'retention':>10}{'visual tok':>12}{'prompt tok':>12}{'TTFT ms':>10}{'total ms':>10}"
          f"{'TTFT/full':>11}{'vision':>9}{'select':>9}{'prefill':>9}{'prefill/full':>14}")
    question = "what happens in the video"
    for t in a.frames:
        frames = np.random.RandomState(t).randint(0, 255, (t, 384, 384, 3), dtype=np.uint8)
        inputs = vlm.prepare(frames, question)
        base = None
        for r in (1.0, 0.35, 0.1):
            with torch.inference_mode():
                for _ in range(2):  # warm-up
                    vlm._answer(inputs, t, r, None, 8)
                runs = [vlm._answer(inputs, t, r, None, 8) for _ in range(a.repeats)]
            ttft = statistics.median(x.prefill_ms for x in runs)
            total = statistics.median(x.total_ms for x in runs)
            st = {k: statistics.median(x.stages_ms[k] for x in runs) for k in ("vision", "select", "llm_prefill")}
            base = base or (ttft, st["llm_prefill"])
            prompt = inputs["input_ids"].shape[1] - runs[0].full_visual_tokens + runs[0].visual_tokens
            print(f"{t:>6}{r:>10}{runs[0].visual_tokens:>12}{prompt:>12}{ttft:>10.1f}{total:>10.1f}"
                  f"{ttft / base[0]:>11.2f}{st['vision']:>9.1f}{st['select']:>9.2f}{st['llm_prefill']:>9.1f}"
                  f"{st['llm_prefill'] / base[1]:>14.2f}")


if __name__ == "__main__":
    main()
