#!/usr/bin/env bash
# Issue 5's GPU measurements in one call of at most 10 minutes: the benchmark suite on CUDA
# (ours and the reference network, inference and training), then a real training run of the
# GPU experiment for its images/s, then a short table. Everything lands in $OUT.
#
# Prepare on this machine first:  python scripts/prepare_device_carry.py
# Then, through the device tool:  run(command="bash scripts/device_speed.sh", carry=[".carry"], timeout_s=600)
# Afterwards add $OUT/results.md to benchmarks/RESULTS.md under "GPU".
# ROWS picks the suite's rows (default inference,training; styles and pixels compile one graph
# per shape, which takes longer than the measurements); TRAIN_STEPS the real run's length.
# A CPU dry run of the whole script (minutes):
#   DEVICE=cpu ROWS=pixels SUITE_ARGS=--quick TRAIN_STEPS=2 bash scripts/device_speed.sh \
#       data.batch_size=2 data.image_size=64 model.width=0.25 trainer.accelerator=cpu
# (extra arguments are Hydra overrides for the training run).
set -uo pipefail
OUT=${OUT:-/tmp/cin_style_out}
DEVICE=${DEVICE:-cuda}
ROWS=${ROWS:-inference,training}
TRAIN_STEPS=${TRAIN_STEPS:-400}
mkdir -p "$OUT" /tmp/cin_style_cache
python3 -c "import hydra, omegaconf" 2>/dev/null || python3 -m pip install --no-index --no-deps --no-build-isolation -q .carry/wheels/*
ln -sf "$PWD/.carry/vgg16_relu4_3.safetensors" /tmp/cin_style_cache/vgg16_features.safetensors
export PYTHONPATH=. CIN_STYLE_DATA=.carry/data CIN_STYLE_CACHE=/tmp/cin_style_cache
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee "$OUT/gpu.txt"

# 1. The suite (each row in its own process; compiled graphs are cached between processes).
timeout 330 python3 -m benchmarks.run --device "$DEVICE" --only "$ROWS" ${SUITE_ARGS:-} --json "$OUT/results.json" > "$OUT/results.md" 2> "$OUT/suite.log"
echo "suite exit $?" >> "$OUT/suite.log"

# 2. A real training run of the GPU experiment: images/s after warm-up, as cin-style train prints it.
timeout 200 python3 -m cin_style.cli train experiment=paintings data_root=.carry/data \
    trainer.max_steps="$TRAIN_STEPS" trainer.val_check_interval=100000 checkpoint_every=100000 \
    trainer.enable_progress_bar=false hydra.run.dir="$OUT/train" "$@" > "$OUT/train.log" 2>&1
echo "train exit $?" >> "$OUT/train.log"

echo; echo "== suite (ours vs reference) =="; cat "$OUT/results.md"
echo; echo "== suite log (last lines) =="; tail -n 12 "$OUT/suite.log"
echo; echo "== training run =="; grep -E "finished|rror" "$OUT/train.log" | tail -n 5
