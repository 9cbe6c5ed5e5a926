"""Command line: python -m selector VIDEO [--encoder NAME] [--frames N] [--retention R ...] [knobs] [--out F].

Every SelectorConfig knob has a flag, generated from the knob table (`config.knobs`). Several retentions in
one run compute the maps once and reuse them (`select_tokens(..., reuse=...)`); with --out each gets its own file
(FILE-r0.35.npz).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import SelectorConfig, knobs
from .export import to_json, to_npz


def add_knob_flags(ap: argparse.ArgumentParser, config_cls: type = SelectorConfig) -> None:
    """One flag per knob of config_cls (--tau, --temporal-window, --grid-fusion ...), generated from its table."""
    for k in knobs(config_cls):
        flag = "--" + k.name.replace("_", "-")
        if k.kind == "bool":
            ap.add_argument(flag, action="store_true", default=k.default, help=k.help)
            continue
        default = "none (0)" if k.default is None else k.default
        ap.add_argument(flag, dest=k.name, type=int if k.kind == "int" else float, default=k.default,
                        help=f"{k.help} (default {default})")


def knob_values(a: argparse.Namespace, config_cls: type = SelectorConfig) -> dict:
    """The knobs' values from parsed flags (`Knob.parse`, as in the app and the lmms-eval plugin: 0 for an optional
    knob means none)."""
    return {k.name: k.parse(getattr(a, k.name)) for k in knobs(config_cls)}


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
    add_knob_flags(ap)
    ap.add_argument("--out", default=None,
                    help="write the result to .npz or .json (several retentions: one file each, FILE-rR.npz)")
    a = ap.parse_args(argv)

    from . import SelectorError, select_tokens
    from .cpu_tuning import tune_malloc
    from .encoders import EncoderError, default_encoder
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
        return fail(f"{a.video}: {'a directory, not a video file' if Path(a.video).is_dir() else 'no such file'}")
    bad = [r for r in a.retention if not 0.0 < r <= 1.0]  # before the video is decoded and encoded
    if bad:
        return fail(f"retention must be in (0, 1], got {bad[0]:g}")
    several = len(a.retention) > 1
    try:
        cfg = SelectorConfig(**knob_values(a))
        progress(0.0, f"loading encoder {a.encoder or default_encoder()}")
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
