#!/bin/bash
# The re-identification half of docs/adversarial.md: Yale B 48/12 at 32 px, 3 seeds, one thread.
# Each invocation adds settings for all three seeds (rerunning resumes: finished cells are kept).
set -e
cd "$(dirname "$0")/.."  # the repository root
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
$PY benchmarks/reid_grid.py prepare --yaleb ../shared/data/yaleb --yaleb-size 32 --sets .cache/attacks-grid-32
R="--sets .cache/attacks-grid-32 --out runs/adv-reid-cpu32 --device cpu --protocols yaleb-48/12 --epochs-scale 0.34
   --tag cpu32-adv --compact --no-reconstruct --threads 1 --seeds 0 1 2"
T="--transfer-archs resnet18:width=16"
# in priority order: the clean reference and the middle budget, DP-Pix beside it, the larger budget,
# then the transfer to another network, then the rest of the curve
for methods in "none adv:eps=4" "dp-pix:b=1,m=1,epsilon=100" "adv:eps=8"; do
    nice -n 10 $PY benchmarks/reid_grid.py run $R --methods $methods
done
nice -n 10 $PY benchmarks/reid_grid.py run $R $T --methods none adv:eps=4 adv:eps=8
for methods in "dp-pix:b=1,m=1,epsilon=50" "adv:eps=2" "dp-pix:b=1,m=1,epsilon=200" "adv:eps=128,norm=l2"; do
    nice -n 10 $PY benchmarks/reid_grid.py run $R $T --methods $methods
done
# the PriGAN-style one-pass generator at two budgets (its own tag: may run beside the lines above)
nice -n 10 $PY benchmarks/reid_grid.py run ${R/cpu32-adv /cpu32-adv-gen } --methods adv-gen:eps=4 adv-gen:eps=8
# their transfer to resnet18, and DP-Pix epsilon 100's (added last; the cells above are reused)
nice -n 10 $PY benchmarks/reid_grid.py run ${R/cpu32-adv /cpu32-adv-gen } $T --methods adv-gen:eps=4 adv-gen:eps=8
nice -n 10 $PY benchmarks/reid_grid.py run $R $T --methods dp-pix:b=1,m=1,epsilon=100
