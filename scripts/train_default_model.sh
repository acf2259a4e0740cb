#!/usr/bin/env bash
# Reproduce fervid's shipped default emotion model: three seeded stages, each resumable
# (rerun the script after an interruption; a finished stage is skipped). About 90 minutes
# on a 2-core CPU; add --device cuda by setting DEVICE=cuda.
#   bash scripts/train_default_model.sh ../shared/data ../shared/weights/mobilenet_v2_imagenet_tflite.safetensors runs
# then: cp runs/v2_stage3/model.safetensors fervid/models/fervid-mobilenetv2-fer.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:?data root (../shared/data)}"
INIT="${2:?ImageNet MobileNetV2 .safetensors (../shared/weights/...)}"
RUNS="${3:-runs}"
FERVID="${FERVID:-.venv/bin/fervid}"
stage() {  # recipe, init file, run folder
  if [ -f "$3/model.safetensors" ]; then echo "$3: done"; return; fi
  "$FERVID" train --recipe "$1" --data-root "$DATA" --init "$2" --out "$3" \
    --device "${DEVICE:-cpu}" $([ -f "$3/checkpoint.safetensors" ] && echo --resume)
}
stage pipelines/train_v2.toml "$INIT" "$RUNS/v2"                                       # 64 px, 26 epochs
stage pipelines/train_v2_stage2.toml "$RUNS/v2/model.safetensors" "$RUNS/v2_stage2"       # 72 px, 20 epochs
stage pipelines/train_v2_stage3.toml "$RUNS/v2_stage2/model.safetensors" "$RUNS/v2_stage3" # FER+ x2, 5 epochs
echo "model: $RUNS/v2_stage3/model.safetensors"
