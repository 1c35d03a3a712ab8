#!/bin/bash
# The CelebA re-identification row of docs/adversarial.md: 500 targets drawn per seed from the 2,000
# people of ../shared/data/celeba, 4 training / 1 test face each, 32 px, 3 seeds, two processes of
# one thread each. With 4 photos per person a network trained from scratch recognises 1-4% of the
# test faces, so every model here (the surrogate the perturbation attacks, the retrained attacker,
# the clean model of the cell's seed, resnet18) first learns the other 1,500 people (7,500 faces).
# Rerunning resumes: finished cells are kept.
set -e
cd "$(dirname "$0")/.."  # the repository root
PY=${PY:-.venv/bin/python}
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
SEEDS=${SEEDS:-"0 1 2"}
$PY benchmarks/reid_grid.py prepare --celeba ../shared/data/celeba --celeba-size 32 --sets .cache/attacks-grid-32
R="--sets .cache/attacks-grid-32 --out runs/adv-celeba-cpu32 --device cpu --protocols celeba-500of2000-4/1
   --epochs-scale 0.5 --tag cpu32-adv-celeba --compact --no-reconstruct --threads 1
   --pretrain-others only --surrogate-pretrain-others"
REVERSED=$(echo $SEEDS | tr ' ' '\n' | tac | tr '\n' ' ')
both() {  # two processes on one group of methods, each taking the next free cell (--shard auto: with
          # --shard 0/2 and 1/2 one process got every retrain cell and the other sat idle). The second
          # walks the seeds backwards, so the two train different seeds' models instead of one waiting
          # for the other's.
    nice -n 10 $PY benchmarks/reid_grid.py run $R --seeds $SEEDS --shard auto "$@" &
    local first=$!
    nice -n 10 $PY benchmarks/reid_grid.py run $R --seeds $REVERSED --shard auto "$@"
    wait $first  # its failure stops the script too (a bare wait always succeeds)
}
# in priority order: the clean reference and the middle budget; a first DP-Pix and the larger budget;
# the transfer to another network; DP-Pix at the PSNR of eps 4 and 8. On RGB faces DP-Pix b=1 adds
# noise of scale 3 x 255 / epsilon (a pixel's three values), so epsilon 300 and 150 match 36.5 and
# 30.6 dB; epsilon 100 (27.7 dB) was the Yale B setting, kept as a point below them.
both --methods none adv:eps=4
both --methods "dp-pix:b=1,m=1,epsilon=100" adv:eps=8
both --methods none adv:eps=4 adv:eps=8 --transfer-archs resnet18:width=16 --arch-only resnet18
both --methods "dp-pix:b=1,m=1,epsilon=300" "dp-pix:b=1,m=1,epsilon=150"
