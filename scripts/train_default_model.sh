#!/usr/bin/env bash
# Reproduce fervid's shipped default emotion model (v3): six seeded stages, each resumable
# (rerun the script after an interruption; a finished stage is skipped), then the logit
# adjustment. v2's three stages take about 90 minutes on a 2-core CPU, v3's three about 80
# more; add --device cuda by setting DEVICE=cuda. To skip v2's stages, start v3 from the
# v2 model file: V2=path/to/v2.safetensors (the shipped v2 is model_stages/v2.safetensors).
#   bash scripts/train_default_model.sh ../shared/data ../shared/weights/mobilenet_v2_imagenet_tflite.safetensors runs
# then: cp runs/v3_final.safetensors fervid/models/fervid-mobilenetv2-fer.safetensors
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
# v2 as shipped had flip TTA set afterwards (scripts/set_model_tta.py); v3 continues from it
V2="${V2:-$RUNS/v2_stage3/model.safetensors}"
stage pipelines/train_v3.toml "$V2" "$RUNS/v3"                                          # 96 px, 2 of 18 epochs
stage pipelines/train_v3_stage2.toml "$RUNS/v3/model.safetensors" "$RUNS/v3_stage2"      # 96 px, 9 epochs
stage pipelines/train_v3_stage3.toml "$RUNS/v3_stage2/model.safetensors" "$RUNS/v3_stage3" # FER+ x2, 8 epochs
[ -f "$RUNS/v3_final.safetensors" ] || "${PYTHON:-.venv/bin/python}" scripts/fit_logit_adjustment.py \
  "$RUNS/v3_stage3/model.safetensors" "$DATA" "$RUNS/v3_final.safetensors" \
  --offsets neutral=-0.2,angry=0.1,fear=0.1,sad=0.1  # the model card, "Class balance"
echo "model: $RUNS/v3_final.safetensors"
