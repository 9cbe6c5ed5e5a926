"""python -m selector.compare VIDEO [--methods a,b,c] [--retention R ...] [--frames N] [--encoder NAME] [--out F]

Every method at every retention on the video's features (encoded once): one row per method and retention with
the rows kept, merged rows, coverage, frames and g×g cells covered, the time and the rows kept in each frame
(`frame_rows`: ENTROPY-SELECT's budgets b_t, the same count for the others); a table on stdout, progress on stderr,
and with --out a .csv or .json file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from . import DEFAULT_METHODS, METHODS, parse_methods, rows_for

FIELDS = ("method", "retention", "tokens_kept", "merged", "coverage", "frames_covered", "cells_covered", "ms",
          "frame_rows")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selector.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, of: {', '.join(METHODS)}")
    ap.add_argument("--retention", type=float, nargs="+", default=[0.1, 0.35], metavar="R")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--encoder", default=None, help="default: $ENTROPY_SELECT_ENCODER or dinov2-s")
    ap.add_argument("--out", default=None, help="results.csv or results.json")
    a = ap.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    try:
        methods = parse_methods(a.methods)
    except ValueError as e:
        return fail(str(e))
    bad = [r for r in a.retention if not 0.0 < r <= 1.0]
    if bad:
        return fail(f"retention must be in (0, 1], got {bad[0]:g}")
    if a.out and Path(a.out).suffix not in (".csv", ".json"):
        return fail(f"--out must end in .csv or .json, got {a.out}")
    if a.out and not Path(a.out).resolve().parent.is_dir():
        return fail(f"--out: the folder {Path(a.out).resolve().parent} does not exist")
    from ..encoders import EncoderError
    from ..features import extract
    from ..video import VideoError

    def progress(frac: float, msg: str) -> None:
        print(f"[{frac:4.0%}] {msg}", file=sys.stderr, flush=True)

    try:
        feats = extract(a.video, a.encoder, a.frames, progress=progress)
        rows = rows_for(feats.tokens, methods, a.retention, progress)
    except (VideoError, EncoderError, ValueError) as e:
        return fail(str(e))
    progress(1.0, f"{len(rows)} results on {tuple(feats.tokens.shape)} tokens from {feats.encoder}")
    print(" ".join(f"{f:>14s}" for f in FIELDS[:-1]) + "  frame_rows")
    for row in rows:
        print(" ".join(f"{row[f]:>14}" for f in FIELDS[:-1]) + "  " + " ".join(map(str, row["frame_rows"])))
    if a.out:
        try:
            with open(a.out, "w", newline="") as f:
                if a.out.endswith(".json"):
                    json.dump(rows, f, indent=1)
                else:
                    w = csv.DictWriter(f, fieldnames=FIELDS)
                    w.writeheader()  # frame_rows: the rows kept in each frame, separated by spaces
                    w.writerows({**row, "frame_rows": " ".join(map(str, row["frame_rows"]))} for row in rows)
        except OSError as e:
            return fail(f"could not write {a.out}: {e.strerror or e}")
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
