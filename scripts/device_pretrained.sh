#!/usr/bin/env bash
# The whole GPU job for the shipped "paintings" network, in one call of at most 10 minutes:
# train for a fixed time, export (half precision, with each painting's credits), evaluate on
# the Kodak photos, make the gallery, and leave everything in $OUT.
#
# Prepare on this machine first:  python scripts/prepare_device_carry.py
# Then, through the device tool:  run(command="bash scripts/device_pretrained.sh 400", carry=[".carry"], timeout_s=600)
# Afterwards copy $OUT/paintings.safetensors to cin_style/models/, $OUT/pretrained.md to
# docs/pretrained.md and $OUT/gallery/ to docs/gallery/.
# Extra arguments are Hydra overrides for the training (a CPU dry run: see docs/pretrained.md);
# $EVAL_ARGS adds options to the evaluation (e.g. "--limit 2 --size 64").
set -euo pipefail
BUDGET=${1:-400}                       # seconds of training
shift || true
OUT=${OUT:-/tmp/cin_style_out}
mkdir -p "$OUT"
python3 -c "import hydra, omegaconf" 2>/dev/null || python3 -m pip install --no-index --no-deps --no-build-isolation -q .carry/wheels/*
export PYTHONPATH=. CIN_STYLE_DATA=.carry/data
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU (CPU dry run)"; } | tee "$OUT/gpu.txt"
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$OUT/gpu.txt"

printf -v MAXTIME '00:00:%02d:%02d' $((BUDGET / 60)) $((BUDGET % 60))
TRAIN=(python3 -m cin_style.cli train experiment=paintings data_root=.carry/data
       loss.vgg_weights=.carry/vgg16_relu4_3.safetensors trainer.max_time="$MAXTIME"
       data.num_workers=8 trainer.enable_progress_bar=false hydra.run.dir="$OUT/run" "$@")
echo "${TRAIN[*]}" > "$OUT/command.txt"
"${TRAIN[@]}" 2>&1 | tee "$OUT/train.log" | grep -E "finished|style\(s\)|VGG|Error|error" || true

python3 -m cin_style.cli export "$OUT/run/checkpoints/last.ckpt" -o "$OUT/paintings.safetensors" --half --credits .carry/data/MANIFEST.csv
python3 -m cin_style.cli evaluate -m "$OUT/paintings.safetensors" --content .carry/data/content/val \
    --style-images .carry/data/styles --json "$OUT/eval/paintings.json" ${EVAL_ARGS:-} > "$OUT/evaluate.log" 2>&1
python3 scripts/make_gallery.py -m "$OUT/paintings.safetensors" --out "$OUT/gallery" > "$OUT/gallery.log" 2>&1 || echo "gallery failed (see gallery.log)"
python3 scripts/pretrained_report.py --out "$OUT" > "$OUT/pretrained.md"
tail -n 30 "$OUT/pretrained.md"
