#!/usr/bin/env bash
# Issue 18 at full size on one GPU: the decisive factors of the Fan 2018 ablation on Yale B at
# 96 x 96 (6 x 6 cells) and 112 x 96 (Fan's 6 x 7 cells), b = 16, m = 16 (Fan's exact parameters),
# three seeds, SHARDS processes sharing the GPU; sized for about 4 minutes on an H200.
#
#   bash benchmarks/gpu_fan_ablation.sh [OUTDIR]      # OUTDIR: default $OUT, else runs/fan-ablation-gpu
#
# OUTDIR gets rows-gpu-*.jsonl (one JSON line per cell, as `reid_ablation.py run` writes them),
# shard-*.log, prepare.log and table.md; render the rows again later with
#   python benchmarks/reid_ablation.py table --out OUTDIR --at 40 100 --best-epoch
# A rerun with the same OUTDIR resumes after the cells already there.
#
# Environment: YALEB (default ../shared/data/yaleb), SETS (default .cache/fan-ablation-s4),
# FACTORS (default below, in priority order), SEEDS ("0 1 2"), EPOCHS (100), SHARDS (8),
# LIMIT (seconds for the cells, default 200), DEVICE (cuda; DEVICE=cpu EPOCHS=1 FACTORS=baseline
# SEEDS=0 checks the script on a CPU), PYTHON (python3). Uses src/ directly (no install).
set -u
out=${1:-${OUT:-runs/fan-ablation-gpu}}
py=${PYTHON:-python3}
sets=${SETS:-.cache/fan-ablation-s4}
factors=${FACTORS:-baseline noise-per-epoch fan-data fan-like even-light releases-4 cells-6x7 test-releases-4 train-48}
shards=${SHARDS:-8}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$out"
start=$SECONDS
# 2,414 PGM faces decoded at two sizes: seconds; sets prepared elsewhere (and carried) are used as they are
if [ -f "$sets/yaleb-96x96.npz" ] && [ -f "$sets/yaleb-112x96.npz" ]; then
    echo "using the sets in $sets"
else
    "$py" benchmarks/reid_ablation.py prepare --yaleb "${YALEB:-../shared/data/yaleb}" --scale 4 \
        --geometries 6x6 6x7 --sets "$sets" > "$out/prepare.log" 2>&1 || { cat "$out/prepare.log"; exit 1; }
    echo "prepared in $((SECONDS - start))s"
fi
for ((i = 0; i < shards; i++)); do
    timeout --kill-after=10 "${LIMIT:-200}" "$py" benchmarks/reid_ablation.py run --sets "$sets" --out "$out" \
        --scale 4 --device "${DEVICE:-cuda}" --factors $factors --seeds ${SEEDS:-0 1 2} \
        --epochs "${EPOCHS:-100}" --shard "$i/$shards" --tag gpu > "$out/shard-$i.log" 2>&1 &
done
wait
echo "cells done in $((SECONDS - start))s: $(cat "$out"/rows-gpu-*.jsonl 2>/dev/null | wc -l) rows"
tail -n 2 "$out"/shard-*.log
"$py" benchmarks/reid_ablation.py table --out "$out" --at 40 "${EPOCHS:-100}" --best-epoch | tee "$out/table.md"
