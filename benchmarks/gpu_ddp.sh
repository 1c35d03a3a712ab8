#!/usr/bin/env bash
# DDP training speed on the GPU(s) of this machine, for docs/performance.md (issue 17, part 2).
#
#   bash benchmarks/gpu_ddp.sh            # writes $OUT/ddp_speed_gpu.{json,png} when OUT is set
#
# Measures yu2019 (full width, 128 px, global batch 256, bf16 autocast) through the one training
# loop, launched by torchrun: 1 process without a process group, 1 process under DDP in an NCCL
# group of one (what DDP's hooks and all-reduce cost), and, when the machine has N > 1 GPUs, N
# processes under DDP. With one GPU (the project's lease) NCCL across processes cannot be shown.
# About 1-2 minutes on one H200 (torch start-up and CUDA initialisation dominate); capped at 170 s.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
if [ "$GPUS" -lt 1 ]; then echo "no NVIDIA GPU here" >&2; exit 2; fi
PROCS="1"; [ "$GPUS" -gt 1 ] && PROCS="1 $GPUS"
OUTDIR=${OUT:-/tmp/gpu_ddp}; mkdir -p "$OUTDIR"
nvidia-smi -L
timeout 170 "$PY" benchmarks/ddp_speed.py --device cuda --procs $PROCS --size 128 --batch 256 \
    --images 10240 --epochs 2 --json "$OUTDIR/ddp_speed_gpu.json" --png "$OUTDIR/ddp_speed_gpu.png"
