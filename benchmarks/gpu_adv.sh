#!/usr/bin/env bash
# The adv method on one GPU, in at most about 3 minutes (docs/adversarial.md, "On a GPU"):
#   1. PGD throughput (images/s, 10 steps, L-inf) at 64 and 128 px for yu2019 and resnet18, and one
#      epoch of training with and without adversarial training;              about 60 s on an H200
#   2. the full-size re-identification row: Extended Yale B at 96 px, 48/12 split, mcpherson2016
#      surrogates per seed, adv eps 2/4/8 and DP-Pix at matched PSNR, transfer to resnet18;
#      cut at REID_SECONDS (default 110), resumable (rerun to add seeds).
#
#   OUT=/tmp/out bash benchmarks/gpu_adv.sh
#
# Prints every figure; writes OUT/adv_speed.json, OUT/adv_speed.log, OUT/reid.log and the rows
# OUT/rows-gpu-adv-0.jsonl (the checkpoints stay in WORK, default /tmp/adv-gpu: too large to return).
# A CPU check of the script itself: DEVICE=cpu SIZES=16 N=8 YALEB_SIZE=16 REID_SEEDS=0
#   REID_EXTRA="--epochs-scale 0.02" bash benchmarks/gpu_adv.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/adv-gpu-out}
WORK=${WORK:-/tmp/adv-gpu}
YALEB=${YALEB:-../shared/data/yaleb}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD/src
start=$(date +%s)
DEVICE=${DEVICE:-cuda}
OUT="$OUT" timeout 100 $PY benchmarks/adv_speed.py --device $DEVICE --sizes ${SIZES:-64,128} --arch yu2019,resnet18 \
    --n ${N:-1024} --batch 256 --train 2>&1 | tee "$OUT/adv_speed.log"
echo "speed step: rc=${PIPESTATUS[0]}, $(( $(date +%s) - start )) s"
timeout 40 $PY benchmarks/reid_grid.py prepare --yaleb "$YALEB" --yaleb-size ${YALEB_SIZE:-96} --sets "$WORK/sets" \
    > "$OUT/prepare.log" 2>&1
timeout "${REID_SECONDS:-110}" $PY benchmarks/reid_grid.py run --sets "$WORK/sets" --out "$WORK/reid" --device $DEVICE \
    --protocols yaleb-48/12 --seeds ${REID_SEEDS:-0 1 2} --tag gpu-adv --compact --no-reconstruct \
    --transfer-archs resnet18 --methods none "adv:eps=4" "adv:eps=8" "dp-pix:b=1,m=1,epsilon=100" \
    "dp-pix:b=1,m=1,epsilon=50" "adv:eps=2" ${REID_EXTRA:-} 2>&1 | tee "$OUT/reid.log"
echo "reid step: rc=${PIPESTATUS[0]}, $(( $(date +%s) - start )) s in all"
cp "$WORK"/reid/rows-*.jsonl "$OUT"/ 2>/dev/null
$PY benchmarks/reid_grid.py table --out "$WORK/reid" | tee "$OUT/reid-table.md"
