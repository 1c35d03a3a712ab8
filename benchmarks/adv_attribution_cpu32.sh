#!/bin/bash
# The attribution half of docs/adversarial.md: CelebA vs four tiny zoo GANs at 32 px on the CPU,
# three seeds, one thread. Every step resumes when rerun; seed 0 of every experiment first.
set -e
cd "$(dirname "$0")/.."  # the repository root
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
OUT=${OUT:-runs/celeba-adv}
RUN="nice -n 10 $PY -m privattrib run"
nice -n 10 $PY -m privattrib adv surrogate examples/celeba-adv-cpu.yaml -o $OUT --seed 100 --device cpu
mkdir -p $OUT-dct && ln -sfn ../$(basename $OUT)/data ../$(basename $OUT)/gans $OUT-dct/  # reuse data and GANs
for seeds in 0 1,2; do
    $RUN examples/celeba-adv-cpu.yaml -o $OUT --device cpu --no-progress --seeds $seeds
    $RUN examples/celeba-adv-immunization-cpu.yaml -o $OUT --device cpu --no-progress --seeds $seeds
    # an unseen architecture: the DCT detector of Frank et al. on the same data and perturbations
    $RUN examples/celeba-adv-dct-cpu.yaml -o $OUT-dct --device cpu --no-progress --seeds $seeds
done
$RUN examples/celeba-adv-immunization-scratch-cpu.yaml -o $OUT --device cpu --no-progress
