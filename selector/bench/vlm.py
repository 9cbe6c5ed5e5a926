"""Time to first token of LLaVA-OneVision (or Qwen2.5-VL, Qwen3-VL) with all, 35 % and 10 % of the video tokens.

python -m selector.bench_vlm [--frames 16 32] [--device cuda] [--llm 0.5b|7b] [--family qwen2_5_vl|qwen3_vl]
                            [--size 2b|8b] [--prefill graph eager]

The model has the real LLaVA-OneVision sizes (SigLIP-SO400M at 384 px + Qwen2-0.5B, or Qwen2-7B with
--llm 7b), or with --family qwen2_5_vl the Qwen2.5-VL-3B sizes (frames of 448×448: 16×16 merged tokens per
2 frames), or with --family qwen3_vl the Qwen3-VL-2B or -8B sizes (--size), with random weights, built here
from configs: nothing is downloaded. Timings are honest; the
answers are not. TTFT counts from the frames' pixels to the first token (vision tower included); the
"cached" columns count from cached video features (a follow-up question on the same clip: selection +
LLM prefill), which is the part token selection can shorten. --prefill picks the LLM prefill: "graph" replays
it from CUDA graphs per length bucket (selector.prefill, the app's default on a GPU; LLaVA-OneVision only),
"eager" is the stock forward; each one named gets its own rows (the graphs are captured in the warm-up).
--decode picks the answer loop: "graph" (a static KV cache, the step replayed from a CUDA graph; selector.decode,
the default on a GPU) or "eager" (one forward a token). Every answer runs to --new-tokens (the end-of-text token is
ignored, so each row times the same steps); "ms/tok" is the median wall time per token after the first (the host
waits for the GPU at the end), "floor" the time to read the language model's weights once at the card's memory
bandwidth (H100 SXM 3.35 TB/s, H200 4.8 TB/s); "total ms" is the whole answer (TTFT plus the decode).
"""

from __future__ import annotations

import argparse
import statistics
import threading

import numpy as np
import torch

from .. import vlm as vlm_module
from ..decode import StaticDecoder
from ..vlm import FAMILIES, VLM, graph_prefill
from .models import BUILDERS

#: memory bandwidth by card name (bytes/s), for the weight-read floor of a decode step
BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}

#: frame side of the benchmark's random clips: (tiny model, real sizes); the real sizes' processor input
SIDES = {"llava_onevision": (112, 384), "qwen2_5_vl": (112, 448), "qwen3_vl": (128, 448)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m selector.bench_vlm", description=__doc__)
    ap.add_argument("--frames", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--llm", default="0.5b", choices=["0.5b", "7b"], help="language model sizes")
    ap.add_argument("--family", default="llava_onevision", choices=[t for t in BUILDERS if t in FAMILIES])
    ap.add_argument("--size", default="8b", choices=["2b", "8b"], help="Qwen3-VL sizes")
    ap.add_argument("--tiny", action="store_true", help="tiny random model (a smoke test of this script)")
    ap.add_argument("--prefill", nargs="+", default=None, choices=["graph", "compiled", "eager"],
                    help="LLM prefill modes to time (default: graph and eager on a GPU, eager on a CPU)")
    ap.add_argument("--decode", nargs="+", default=None, choices=["graph", "compiled", "eager"],
                    help="answer loops to time (default: graph and eager on a GPU, eager on a CPU)")
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens every answer generates")
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    fam = FAMILIES[a.family]
    size = {"llava_onevision": a.llm, "qwen2_5_vl": "3b", "qwen3_vl": a.size}.get(a.family, "")
    model, processor = BUILDERS[a.family](not a.tiny, 0, str(dev), dtype, size)
    label = f"tiny {fam.label}" if a.tiny else f"{fam.label}-{size.upper()}"
    side = SIDES.get(a.family, (112, 448))[0 if a.tiny else 1]
    model = model.to(dtype)
    modes = a.prefill or (["graph", "eager"] if dev.type == "cuda" and a.family == "llava_onevision" else ["eager"])
    if {"graph", "compiled"} & set(modes) and (dev.type != "cuda" or a.family != "llava_onevision"):
        ap.error("--prefill graph / compiled need --device cuda and the llava_onevision family")
    decodes = a.decode or (["graph", "eager"] if dev.type == "cuda" else ["eager"])
    if {"graph", "compiled"} & set(decodes) and dev.type != "cuda":
        ap.error("--decode graph / compiled need --device cuda")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    attn = getattr(model.config.text_config, "_attn_implementation", "?")
    lm_bytes = sum(p.numel() * p.element_size() for p in model.model.language_model.parameters()) \
        + model.lm_head.weight.numel() * model.lm_head.weight.element_size()
    bw = next((v for k, v in BANDWIDTH.items() if k in name), None)
    floor = f"{lm_bytes / bw * 1e3:.2f} ms" if bw else "unknown card"
    print(f"device {name} · {dtype} · torch {torch.__version__} · {label} sizes · attention {attn} · "
          f"median of {a.repeats} · greedy, {a.new_tokens} new tokens · LM weights {lm_bytes / 2**30:.2f} GiB, "
          f"read floor {floor} a token")
    print(f"{'prefill':>8}{'decode':>7}{'frames':>7}{'retention':>10}{'visual tok':>12}{'prompt tok':>12}"
          f"{'TTFT ms':>10}{'total ms':>10}{'TTFT/full':>11}{'vision':>9}{'select':>9}{'prefill':>9}"
          f"{'prefill/full':>14}{'cached ms':>11}{'cached/full':>13}{'ms/tok':>8}")
    question = "what happens in the video"
    vlm_module._eos_ids = lambda model, processor: set()  # every answer runs to --new-tokens
    decoders = {"graph": StaticDecoder(model) if "graph" in decodes else None, "eager": None,
                "compiled": StaticDecoder(model, compile=True) if "compiled" in decodes else None}
    vlms = {(m, d): VLM(f"random {label} sizes", model, processor, dev, dtype, threading.Lock(), a.family,
                        graph_prefill(model, a.family, m), decoders[d])
            for m in modes for d in decodes}  # graphs kept across clips
    for (mode, dec), t in ((k, t) for k in vlms for t in a.frames):
        vlm = vlms[(mode, dec)]
        frames = np.random.RandomState(t).randint(0, 255, (t, side, side, 3), dtype=np.uint8)
        inputs = vlm.prepare(frames, question)
        base = None
        for r in (1.0, 0.35, 0.1):
            with torch.inference_mode():
                for _ in range(2):  # warm-up
                    vlm._answer(inputs, t, r, None, a.new_tokens)
                runs = [vlm._answer(inputs, t, r, None, a.new_tokens) for _ in range(a.repeats)]
            ttft = statistics.median(x.prefill_ms for x in runs)
            total = statistics.median(x.total_ms for x in runs)
            st = {k: statistics.median(x.stages_ms[k] for x in runs) for k in ("vision", "select", "llm_prefill")}
            cached = st["select"] + st["llm_prefill"]
            base = base or (ttft, st["llm_prefill"], cached)
            prompt = inputs["input_ids"].shape[1] - runs[0].full_visual_tokens + runs[0].visual_tokens
            per = statistics.median(x.ms_per_token or 0.0 for x in runs)
            assert all(x.decode_path == ("eager" if dec == "eager" else "graph") for x in runs), dec
            if decoders[dec] is not None:
                assert decoders[dec].disabled is None, decoders[dec].disabled
            print(f"{mode:>8}{dec:>7}{t:>7}{r:>10}{runs[0].visual_tokens:>12}{prompt:>12}{ttft:>10.1f}{total:>10.1f}"
                  f"{ttft / base[0]:>11.2f}{st['vision']:>9.1f}{st['select']:>9.2f}{st['llm_prefill']:>9.1f}"
                  f"{st['llm_prefill'] / base[1]:>14.2f}{cached:>11.1f}{cached / base[2]:>13.2f}{per:>8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
