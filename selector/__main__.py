"""Command line: python -m selector VIDEO [--encoder NAME] [--frames N] [--retention R ...] [knobs] [--out FILE].

Every SelectorConfig knob has a flag (defaults: SelectorConfig's). Several retentions in one run compute the
maps once and reuse them (`select_tokens(..., reuse=...)`); with --out each gets its own file (FILE-r0.35.npz).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import SelectorConfig
from .export import to_json, to_npz

#: (flag, SelectorConfig field, type, help); defaults are read from SelectorConfig
KNOB_FLAGS = [
    ("--alpha", "alpha", float, "α, weight of the entropy in S = α·Ĥ + (1-α)·Ĝ"),
    ("--tau", "tau", float, "τ, temperature of the neighbour softmax (small τ, e.g. 0.05: informative Ĥ)"),
    ("--window", "window", int, "k, side of the spatial window in the current frame (odd)"),
    ("--temporal-window", "temporal_window", int, "K_t, frames in the neighbourhood (current + K_t-1 past)"),
    ("--past-window", "past_window", int, "k_past, side of the window in each past frame (odd)"),
    ("--grid", "grid", int, "g, each frame cut into g×g regions for coverage quotas"),
    ("--rho", "rho", float, "ρ, share of a frame's budget spread over the grid cells"),
    ("--q", "q", float, "share of a frame's best tokens whose mean is its saliency"),
    ("--tau-alloc", "tau_alloc", float, "temperature of the frame-budget softmax"),
    ("--min-tokens", "min_tokens", int, "B_min, floor of every frame budget"),
    ("--max-tokens", "max_tokens", int, "B_max, ceiling of every frame budget (default: the whole frame)"),
]


def _out_path(out: str, retention: float, several: bool) -> Path:
    p = Path(out)
    return p.with_name(f"{p.stem}-r{retention:g}{p.suffix}") if several else p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selector", description="ENTROPY-SELECT on a video file.")
    ap.add_argument("video", help="path to a video file")
    ap.add_argument("--encoder", default=None,
                    help="encoder name (default: $ENTROPY_SELECT_ENCODER or dinov2-s; offline: dinov2-s, "
                         "efficientnet-lite0)")
    ap.add_argument("--frames", type=int, default=16, help="frames sampled uniformly (default 16)")
    ap.add_argument("--retention", type=float, nargs="+", default=[0.35], metavar="R",
                    help="fraction(s) of tokens kept, in (0, 1]; several values reuse one computation of the maps "
                         "(default 0.35)")
    defaults = SelectorConfig()
    for flag, field, typ, text in KNOB_FLAGS:
        value = getattr(defaults, field)
        ap.add_argument(flag, type=typ, default=value, help=text if value is None else f"{text} (default {value})")
    ap.add_argument("--grid-fusion", action="store_true", help="merge each cell's dropped tokens into one")
    ap.add_argument("--out", default=None,
                    help="write the result to .npz or .json (several retentions: one file each, FILE-rR.npz)")
    a = ap.parse_args(argv)

    from . import SelectorError, select_tokens
    from .cpu_tuning import tune_malloc
    from .encoders import EncoderError
    from .features import extract
    from .video import VideoError, describe

    tune_malloc()

    def progress(frac: float, msg: str) -> None:
        print(f"[{frac:4.0%}] {msg}", file=sys.stderr, flush=True)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    if a.out:
        if Path(a.out).suffix not in (".npz", ".json"):
            return fail(f"--out must end in .npz or .json, got {a.out}")
        if not Path(a.out).resolve().parent.is_dir():
            return fail(f"--out: the folder {Path(a.out).resolve().parent} does not exist")
    if not Path(a.video).is_file():
        return fail(f"{a.video}: no such file")
    bad = [r for r in a.retention if not 0.0 < r <= 1.0]  # before the video is decoded and encoded
    if bad:
        return fail(f"retention must be in (0, 1], got {bad[0]:g}")
    several = len(a.retention) > 1
    try:
        knobs = {field: getattr(a, field) for _, field, _, _ in KNOB_FLAGS}
        cfg = SelectorConfig(**knobs, grid_fusion=a.grid_fusion)
        progress(0.0, f"loading encoder {a.encoder or 'default'}")
        feats = extract(a.video, a.encoder, a.frames, progress=progress)
        progress(1.0, f"{describe(feats.clip)}; tokens {tuple(feats.tokens.shape)} in {feats.encode_ms:.0f} ms")
        first = None
        for r in a.retention:
            try:
                sel = select_tokens(feats.tokens, r, cfg, reuse=first)
            except SelectorError as e:
                raise SelectorError(f"r={r:g}: {e}" if several else str(e)) from None
            if first is None:
                first = sel
            s = sel.summary()
            print(f"r={r:g}: kept {s['tokens_kept']} of {s['tokens_total']} tokens (grid {s['grid']}), "
                  f"budgets {s['budgets']}")
            print("  selector ms: " + ", ".join(f"{k} {v:.1f}" for k, v in s["timings_ms"].items())
                  + (" (maps reused)" if sel is not first else ""))
            if a.out:
                path = _out_path(a.out, r, several)
                extra = {"video": str(a.video), "encoder": feats.encoder, "encode_ms": feats.encode_ms}
                try:
                    (to_npz if path.suffix == ".npz" else to_json)(sel, path, extra)
                except OSError as e:  # permissions, a full disk
                    return fail(f"could not write {path}: {e.strerror or e}")
                print(f"  wrote {path}")
    except (SelectorError, VideoError, EncoderError) as e:
        return fail(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
