#!/bin/bash
# The attribution half of docs/adversarial.md: CelebA vs four tiny zoo GANs at 32 px on the CPU,
# three seeds, one thread per process. Every step resumes when rerun; seed 0 first everywhere.
#
#   bash benchmarks/adv_attribution_cpu32.sh laundering     # the budget sweep and the DCT detector
#   bash benchmarks/adv_attribution_cpu32.sh immunization   # Yu et al.'s immunization (may run beside it)
#   bash benchmarks/adv_attribution_cpu32.sh                # both, one after the other
#
# The immunization lane has its own experiment directory (two `privattrib run` may not share one)
# whose data, GAN runs and clean-model cache are links to the laundering lane's.
set -e
cd "$(dirname "$0")/.."  # the repository root
PY=${PY:-/work/main/.venv/bin/python}
export PYTHONPATH=$PWD/src OMP_NUM_THREADS=1
OUT=${OUT:-runs/celeba-adv}
RUN="nice -n 10 $PY -m privattrib run"
LANE=${1:-all}
nice -n 10 $PY -m privattrib adv surrogate examples/celeba-adv-cpu.yaml -o $OUT --seed 100 --device cpu
for dir in $OUT-dct $OUT-imm; do  # reuse the data, the GAN sources and the clean models
    mkdir -p $dir/models && ln -sfn ../$(basename $OUT)/data ../$(basename $OUT)/gans $dir/
    ln -sfn ../../$(basename $OUT)/models/clean-models $dir/models/
done
if [ "$LANE" != immunization ]; then
    for seeds in 0 1,2; do
        $RUN examples/celeba-adv-cpu.yaml -o $OUT --device cpu --no-progress --seeds $seeds
        # an unseen architecture: the DCT detector of Frank et al. on the same data and perturbations
        $RUN examples/celeba-adv-dct-cpu.yaml -o $OUT-dct --device cpu --no-progress --seeds $seeds
    done
fi
if [ "$LANE" != laundering ]; then
    for seeds in 0 1,2; do
        $RUN examples/celeba-adv-immunization-cpu.yaml -o $OUT-imm --device cpu --no-progress --seeds $seeds
    done
    $RUN examples/celeba-adv-immunization-scratch-cpu.yaml -o $OUT-imm --device cpu --no-progress
fi
