"""python -m selector.eval: helpers for running the project's lmms-eval models.

  tasks-path              print the folder to give lmms-eval's --include_path (task entropy_select_synthetic)
  make-clips              write the synthetic task's clips now (else written on first use) and print where
  tiny-model DIR          save a random-weight checkpoint (no download) for trying the pipeline:
                          --family llava_onevision|qwen2_5_vl|qwen3_vl, --real-sizes for the real models' layer sizes
                          (LLaVA-OneVision-0.5B, Qwen2.5-VL-3B), --device cuda --bf16 to make those quickly
  summary RESULTS.json    print the per-task timing summary of a results file (efficiency.entropy_select)
"""

from __future__ import annotations

import argparse
import json
import sys

from . import TASKS_PATH


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selector.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks-path", help="print the task folder for --include_path")
    sub.add_parser("make-clips", help="write the synthetic clips")
    tiny = sub.add_parser("tiny-model", help="save a random-weight checkpoint")
    tiny.add_argument("folder")
    from ..bench.models import BUILDERS

    tiny.add_argument("--family", choices=list(BUILDERS), default="llava_onevision")
    tiny.add_argument("--real-sizes", action="store_true",
                      help="the real layer sizes (random weights): LLaVA-OV 0.5B, Qwen2.5-VL 3B, Qwen3-VL --size")
    tiny.add_argument("--size", choices=["2b", "8b"], default="2b", help="Qwen3-VL's real sizes")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--device", default="cpu", help="where the weights are initialized (cuda is quicker)")
    tiny.add_argument("--bf16", action="store_true", help="save the weights in bfloat16 (half the disk)")
    summ = sub.add_parser("summary", help="print the timing summary of a results file")
    summ.add_argument("results")
    args = ap.parse_args(argv)
    if args.command == "tasks-path":
        print(TASKS_PATH)
    elif args.command == "make-clips":
        from .synthetic import data_dir, docs

        print(f"{len(docs())} clips in {data_dir()}")
    elif args.command == "tiny-model":
        import torch

        from ..bench.models import build

        print(build(args.folder, real_sizes=args.real_sizes, seed=args.seed, family=args.family, device=args.device,
                    dtype=torch.bfloat16 if args.bf16 else None, size=args.size))
    else:
        return _summary(args.results)
    return 0


def _summary(path: str) -> int:
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {path}: {e}", file=sys.stderr)
        return 2
    table = (results.get("efficiency") or {}).get("entropy_select")
    if not table:
        print(f"{path} has no efficiency.entropy_select block (run lmms-eval with --log_samples and an "
              "entropy_select_* model)", file=sys.stderr)
        return 1
    cols = ["kept_visual_tokens", "full_visual_tokens", "selection_ms", "prefill_ms", "e2e_ms"]
    print("| task | method | r | samples | errors | " + " | ".join(f"{c} median / p90" for c in cols) + " |")
    print("|---" * (5 + len(cols)) + "|")
    for task, row in table.items():
        cells = [f"{row[c]['median']:g} / {row[c]['p90']:g}" if c in row else "-" for c in cols]
        print(f"| {task} | {row['method']} | {row['retention']:g} | {row['samples']} | {row['errors']} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
