"""Command line: python -m selector VIDEO [--encoder NAME] [--frames N] [--retention R] [--out FILE]."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .export import to_json, to_npz


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selector", description="ENTROPY-SELECT on a video file.")
    ap.add_argument("video", help="path to a video file")
    ap.add_argument("--encoder", default=None, help="encoder name (default: dinov2-s, offline)")
    ap.add_argument("--frames", type=int, default=16, help="frames sampled uniformly (default 16)")
    ap.add_argument("--retention", type=float, default=0.35, help="fraction of tokens kept, in (0, 1]")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--temporal-window", type=int, default=3)
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--grid-fusion", action="store_true")
    ap.add_argument("--out", default=None, help="write the result to .npz or .json")
    a = ap.parse_args(argv)

    from . import SelectorConfig, SelectorError, select_tokens
    from .cpu_tuning import tune_malloc
    from .encoders import EncoderError
    from .features import extract
    from .video import VideoError, describe

    tune_malloc()

    def progress(frac: float, msg: str) -> None:
        print(f"[{frac:4.0%}] {msg}", file=sys.stderr, flush=True)

    if a.out and Path(a.out).suffix not in (".npz", ".json"):
        print(f"error: --out must end in .npz or .json, got {a.out}", file=sys.stderr)
        return 2
    try:
        cfg = SelectorConfig(alpha=a.alpha, tau=a.tau, window=a.window, temporal_window=a.temporal_window,
                             grid=a.grid, grid_fusion=a.grid_fusion)
        progress(0.0, f"loading encoder {a.encoder or 'dinov2-s'}")
        feats = extract(a.video, a.encoder, a.frames, progress=progress)
        progress(1.0, f"{describe(feats.clip)}; tokens {tuple(feats.tokens.shape)} in {feats.encode_ms:.0f} ms")
        sel = select_tokens(feats.tokens, a.retention, cfg)
    except (SelectorError, VideoError, EncoderError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = sel.summary()
    print(f"kept {s['tokens_kept']} of {s['tokens_total']} tokens (grid {s['grid']}), budgets {s['budgets']}")
    print("selector ms: " + ", ".join(f"{k} {v:.1f}" for k, v in s["timings_ms"].items()))
    if a.out:
        extra = {"video": str(a.video), "encoder": feats.encoder, "encode_ms": feats.encode_ms}
        (to_npz if a.out.endswith(".npz") else to_json)(sel, a.out, extra)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
