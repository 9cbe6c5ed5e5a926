"""Coverage of every method of selector.compare on the bundled clip and two generated clips (docs/findings.md).

python tools/findings.py [--encoder dinov2-s] [--frames 16] [--retention 0.1 0.25 0.5]
The generated clips are made deterministically (tests/media.py's patterns): a moving square over a gradient, and
a cut between two scenes halfway. Prints one markdown table per clip: coverage, cells covered, how each method
spreads its rows over the frames (fewest and most rows in a frame, the first frame's share), time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def clips(folder: Path) -> dict[str, Path]:
    from media import pattern, write

    cut = np.concatenate([pattern(24, 144, 192, seed=0), 255 - pattern(24, 144, 192, seed=90)[:, ::-1]])
    return {"bigbuckbunny.mp4 (bundled)": ROOT / "assets" / "bigbuckbunny.mp4",
            "moving square (generated)": write(folder / "square.mp4", pattern(48, 144, 192, seed=0), fps=12),
            "scene cut (generated)": write(folder / "cut.mp4", cut, fps=12)}


def main() -> int:
    from selector.compare import METHODS, rows_for
    from selector.features import extract

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encoder", default="dinov2-s")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--retention", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in clips(Path(tmp)).items():
            feats = extract(path, a.encoder, a.frames)
            rows = rows_for(feats.tokens, list(METHODS), a.retention,
                            lambda f, m, name=name: print(f"[{f:4.0%}] {name}: {m}", file=sys.stderr, flush=True))
            print(f"\n### {name}: {tuple(feats.tokens.shape)} tokens ({feats.encoder})\n")
            r0 = a.retention[0]
            print("| method | " + " | ".join(f"coverage r={r:g}" for r in a.retention) + f" | cells covered r={r0:g}"
                  f" | rows per frame r={r0:g}: min–max | first frame's share r={r0:g} | ms r={r0:g} |")
            print("| --- |" + " --- |" * (len(a.retention) + 4))
            for m in METHODS:
                mine = {row["retention"]: row for row in rows if row["method"] == m}
                first = mine[r0]
                per = first["frame_rows"]
                print(f"| {m} | " + " | ".join(f"{mine[r]['coverage']:.4f}" for r in a.retention)
                      + f" | {first['cells_covered']:.3f} | {min(per)}–{max(per)} | {per[0] / sum(per):.2f}"
                      f" | {first['ms']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
