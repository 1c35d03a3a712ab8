#!/bin/bash
# The attribution half of docs/adversarial.md: CelebA vs four tiny zoo GANs at 32 px on the CPU,
# three seeds, one thread. Every step resumes when rerun.
set -e
cd "$(dirname "$0")/.."  # the repository root
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
OUT=${OUT:-runs/celeba-adv}
nice -n 10 $PY -m privattrib adv surrogate examples/celeba-adv-cpu.yaml -o $OUT --seed 100 --device cpu
nice -n 10 $PY -m privattrib run examples/celeba-adv-cpu.yaml -o $OUT --device cpu --no-progress
nice -n 10 $PY -m privattrib run examples/celeba-adv-immunization-cpu.yaml -o $OUT --device cpu --no-progress
# an unseen architecture: the DCT detector of Frank et al. on the same data and perturbations
mkdir -p $OUT-dct && ln -sfn ../$(basename $OUT)/data ../$(basename $OUT)/gans $OUT-dct/
nice -n 10 $PY -m privattrib run examples/celeba-adv-dct-cpu.yaml -o $OUT-dct --device cpu --no-progress
nice -n 10 $PY -m privattrib run examples/celeba-adv-immunization-scratch-cpu.yaml -o $OUT --device cpu --no-progress
