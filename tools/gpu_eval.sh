#!/usr/bin/env bash
# lmms-eval runs of the two entropy_select models on the synthetic task, with random-weight checkpoints of the real
# sizes (LLaVA-OneVision-0.5B, Qwen2.5-VL-3B), one GPU: every retention and two baselines, then the per-task
# timing table of each run (python -m selector.eval summary). Usage: tools/gpu_eval.sh WORKDIR [FRAMES]
set -euo pipefail
work=${1:?work folder}; frames=${2:-32}
export ENTROPY_SELECT_EVAL_DATA=$work/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
tasks=$(python3 -m selector.eval tasks-path)
python3 -m selector.eval make-clips
for fam in llava_onevision qwen2_5_vl; do
  python3 -m selector.eval tiny-model "$work/$fam" --family $fam --real-sizes --device cuda --bf16 >/dev/null
  for run in entropy_select:1.0 entropy_select:0.35 entropy_select:0.25 entropy_select:0.1 fastvid:0.25 \
             random:0.25; do
    method=${run%:*}; r=${run#*:}
    out="$work/out-$fam-$method-$r"
    python3 -m lmms_eval --model "entropy_select_$fam" \
      --model_args "pretrained=$work/$fam,method=$method,retention=$r,num_frames=$frames" \
      --tasks entropy_select_synthetic --include_path "$tasks" --output_path "$out" --log_samples \
      >"$out.log" 2>&1 || { tail -40 "$out.log"; exit 1; }
    python3 -m selector.eval summary "$out"/*/*_results.json | tail -1
  done
done
