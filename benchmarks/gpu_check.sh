#!/usr/bin/env bash
# Every GPU figure the issues ask for, in priority order, each step under its own time limit, so
# that a short lease on a GPU machine (minutes) yields as many of them as it can in one command.
#
#   bash benchmarks/gpu_check.sh OUTDIR [STEP ...]        # default: every step below, in order
#
# STEP may join steps with '+' (tests+gan+reid): they run at the same time, each with its own log.
# Only steps that time nothing should share the machine like that.
# Steps (each writes OUTDIR/STEP.log; the summary of all is OUTDIR/summary.txt), with the time
# each took on an H100 (2026-11-27):
#   env        nvidia-smi, Python, torch, CUDA, Triton                              7 s
#   kernels    candidate cell-sum / upsampling kernels, Triton and compiled         25-27 s
#   obfuscate  the issue-2 speed table on the device (goal: 5 M images/s)           35-57 s
#   train      yu2019 training speed at 128 px, eager / bf16 / compiled (goal 25k)  77 s
#   train32    the same in the paper's setting (eager fp32, batch 32) beside eager  53 s (H200)
#              fp32 at batch 256
#   tests      every test marked gpu                                                30-76 s; 133 s
#                                                                                    beside the grid
#   gan        gpu-64 dcgan on CelebA for GAN_STEPS steps; copies the sample grid   96 s for 6,000 steps
#   reid       re-identification cells of the attack grid at full size (REID_SETS), REID_SECONDS at
#              most: about 2 s per Yale B 8/2 cell on an H100
#   recon      its reconstruction cells (Yale B 48/12, U-Net): 27-40 s per cell on an H100 alone,
#              about 220 s beside 11 other grid processes (H200)
#   attribute  `privattrib attribute`'s path against grid evaluation, 64 and 128 px (issue 15)
#   ddp        DDP training through torchrun: 1 process, 1 process in an NCCL group (issue 17)
#   advspeed   PGD images/s of the adv method at 64/128 px, adversarial-training epoch (issue 16)
#   advreid    the adv re-identification row on Yale B 48/12 at 96 px (ADV_SETS, REID_SECONDS)
#   fan        the Fan 2018 ablation at 96 px, b = 16, m = 16 (FAN_SETS, FAN_SHARDS; issue 18)
#   A grid step cut by its limit ends with rc=124 and counts as failed; its finished cells are kept
#   (one JSON line each) and the next run resumes after them.
#
# Environment: CELEBA (default ../shared/data/celeba; a folder in the CelebA layout),
# REID_SETS (prepared by `benchmarks/reid_grid.py prepare`, default .cache/attacks-grid),
# GAN_STEPS (default 10000, the gpu-64 preset), REID_SECONDS (default 240), REID_SEEDS (default 0;
# e.g. "1 2"), REID_PROTOCOLS (default yaleb-8/2; in priority order), REID_RESNET (1: also resnet18),
# REID_SHARDS and RECON_SHARDS (default 1: processes sharing the GPU, each its own log NAME-i.log),
# REID_DONE (a folder of earlier rows-*.jsonl: those cells count as done), REID_EXTRA (more
# arguments for `reid_grid.py run`, e.g. "--epochs-scale 0.05" to check the script on a CPU);
# REID_SETS, REID_SECONDS, REID_SEEDS, REID_DONE and REID_EXTRA drive the recon step too.
# PYTHON (python3),
# DEVICE (default cuda; `DEVICE=cpu ... tests gan` with GAN_STEPS=2 checks the script itself),
# DEADLINE (seconds after the start: every step's limit is cut to end 15 s before it; a step with
# under 20 s left is skipped), BUNDLE (a .tar.gz path: every file of OUTDIR packed into it at the
# end, so that a device call's eight returned files hold all the logs).
# Exit status: 0 when every step that ran passed, 1 when one failed, 2 for an unknown step.
# Run from the repository root; it uses src/ directly (PYTHONPATH), so no install is needed
# where torch, numpy, opencv, scipy, scikit-image, typer, rich and pyyaml are present.
# OUTDIR gets only flat, small files (logs, JSON, the GAN's last grid, the attack rows): a device
# call brings back 8 files at most from its $OUT, so the GAN and attack run folders (checkpoints,
# sample grids, models) go to WORK (default: a new folder under TMPDIR or /tmp).
set -u
out=${1:?usage: gpu_check.sh OUTDIR [STEP ...]}
shift
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(env kernels obfuscate train tests gan reid recon)
# a misspelt step is refused before any step runs, not after the ones before it have spent the lease
for step in $(printf '%s\n' "${steps[@]}" | tr '+' '\n'); do
    case $step in
    env | kernels | obfuscate | train | train32 | tests | gan | reid | recon | attribute | ddp | advspeed | advreid | fan) ;;
    *)
        echo "unknown step $step (steps: env kernels obfuscate train train32 tests gan reid recon attribute ddp" \
            "advspeed advreid fan)" >&2
        exit 2 ;;
    esac
done
mkdir -p "$out"
work=${WORK:-}
# WORK, made on first use (only gan, reid and recon write run folders)
use_work() { [ -n "$work" ] || work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX"); mkdir -p "$work"; }
: > "$out/summary.txt"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
celeba=${CELEBA:-../shared/data/celeba}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

deadline=${DEADLINE:-0}
quiet=0  # 1 inside a '+' group: each step's output goes to its log only, not interleaved on stdout

# cut_limit SECONDS: the limit cut to end 15 s before DEADLINE (0: under 20 s would be left)
cut_limit() {
    local limit=$1 left
    if [ "$deadline" -gt 0 ]; then
        left=$((deadline - SECONDS - 15))
        [ "$left" -lt 20 ] && left=0
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    echo "$limit"
}

# run NAME SECONDS CMD...: one step under `timeout`, its output in OUTDIR/NAME.log (and on stdout)
run() {
    local name=$1 limit
    limit=$(cut_limit "$2")
    shift 2
    if [ "$limit" -eq 0 ]; then
        echo "$name skipped: under 20 s left before DEADLINE" | tee -a "$out/summary.txt"
        return
    fi
    local start=$SECONDS rc
    echo "=== $name (limit ${limit}s): $*"
    if [ "$quiet" -eq 1 ]; then
        timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
        rc=$?
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
        rc=${PIPESTATUS[0]}
    fi
    echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$out/summary.txt"
}

run_step() {
    case $1 in
    env)
        run env 60 bash -c "nvidia-smi; $py -c 'import sys, torch; print(sys.version); \
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0)); \
import triton; print(\"triton\", triton.__version__)'" ;;
    kernels)
        run kernels 150 "$py" benchmarks/obfuscation_speed.py --device "$device" --kernel-variants --compile \
            --n 16384 ;;
    obfuscate)
        # every host core: svd-mp runs its SVDs on the host, one per thread
        run obfuscate 120 "$py" benchmarks/obfuscation_speed.py --device "$device" --n 16384 --repeat 3 \
            --min-time 0.2 --threads "$(nproc)" --json "$out/obfuscate.json" ;;
    train)
        run train 240 "$py" benchmarks/train_speed.py --device "$device" --size 128 --batch 256 \
            --json "$out/train.json" ;;
    tests)
        run tests 240 "$py" -m pytest -q -p no:cacheprovider -m gpu tests ;;
    gan)
        use_work
        run gan 330 "$py" -c 'from privattrib.cli import main; main()' gan train --arch dcgan --data "$celeba" --size 64 \
            --preset gpu-64 --steps "${GAN_STEPS:-10000}" --device "$device" -o "$work/gan-dcgan64"
        # the last sample grid and the summary beside the logs (the run folder stays in WORK)
        last=$(ls "$work"/gan-dcgan64/samples/*.png 2>/dev/null | tail -n 1)
        [ -n "$last" ] && cp "$last" "$out/gan-dcgan64-last-grid.png"
        cp "$work"/gan-dcgan64/summary.json "$out/gan-summary.json" 2>/dev/null ;;
    train32)
        run train32 180 bash -c "$py benchmarks/train_speed.py --device $device --size 128 --batch 32 --steps 200 \
--modes eager-fp32 --json $out/train32.json && $py benchmarks/train_speed.py --device $device --size 128 \
--batch 256 --modes eager-fp32 --json $out/train256-fp32.json" ;;
    reid)
        attack_grid reid "${REID_SHARDS:-1}" --protocols ${REID_PROTOCOLS:-yaleb-8/2} --no-reconstruct \
            $([ "${REID_RESNET:-0}" = 1 ] && echo --resnet) ;;
    recon)
        attack_grid recon "${RECON_SHARDS:-1}" --recon-only ;;
    attribute)
        run attribute 90 "$py" benchmarks/attribute_speed.py --device "$device" --sizes 64,128 \
            --n "${ATTRIBUTE_N:-4096}" --repeat 3 ;;
    ddp)
        run ddp 120 env OUT="$out" PYTHON="$py" bash benchmarks/gpu_ddp.sh ;;
    advspeed)
        run advspeed 100 "$py" benchmarks/adv_speed.py --device "$device" --sizes 64,128 --arch yu2019,resnet18 \
            --n 1024 --batch 256 --train ;;
    advreid)
        use_work
        run advreid "${REID_SECONDS:-240}" "$py" benchmarks/reid_grid.py run --sets "${ADV_SETS:-.cache/adv-gpu-sets}" \
            --out "$work/advreid" --device "$device" --protocols yaleb-48/12 --seeds ${REID_SEEDS:-0} --tag gpu-adv \
            --compact --no-reconstruct --transfer-archs resnet18 --methods none "adv:eps=4" "adv:eps=8" \
            "dp-pix:b=1,m=1,epsilon=100" "dp-pix:b=1,m=1,epsilon=50" "adv:eps=2" ${REID_EXTRA:-}
        cat "$work"/advreid/rows-*.jsonl > "$out/advreid-rows.jsonl" 2>/dev/null ;;
    fan)
        # the cells stop LIMIT s in, leaving 20 s for the table
        local fan_limit
        fan_limit=$(cut_limit "${FAN_SECONDS:-260}")
        run fan "$fan_limit" env SETS="${FAN_SETS:-.cache/fan-ablation-s4}" SHARDS="${FAN_SHARDS:-8}" \
            LIMIT=$((fan_limit > 40 ? fan_limit - 20 : 20)) SEEDS="${FAN_SEEDS:-0 1 2}" PYTHON="$py" DEVICE="$device" \
            bash benchmarks/gpu_fan_ablation.sh "$out/fan" ;;
    esac
}

# attack_grid NAME SHARDS ARGS...: SHARDS processes of `reid_grid.py run` side by side on one GPU
# (its networks are small), resuming from the rows already in WORK/NAME and REID_DONE; the finished
# cells' rows (one JSON line each) come back as OUTDIR/NAME-rows.jsonl, the models stay in WORK
attack_grid() {
    local name=$1 shards=$2 i label
    shift 2
    use_work
    mkdir -p "$work/$name"
    if [ -n "${REID_DONE:-}" ]; then
        local copied=0 f
        for f in "$REID_DONE"/rows-*.jsonl; do
            [ -f "$f" ] && cp "$f" "$work/$name/rows-done-${f##*/rows-}" && copied=$((copied + 1))
        done
        # gpu_check's own outputs are named NAME-rows.jsonl: rename them rows-*.jsonl to reuse them
        [ "$copied" -gt 0 ] || echo "$name: REID_DONE=$REID_DONE holds no rows-*.jsonl; every cell runs" >&2
    fi
    for ((i = 0; i < shards; i++)); do
        label=$name
        [ "$shards" -gt 1 ] && label=$name-$i
        (
            [ "$shards" -gt 1 ] && quiet=1
            run "$label" "${REID_SECONDS:-240}" "$py" benchmarks/reid_grid.py run --device "$device" \
                --sets "${REID_SETS:-.cache/attacks-grid}" --out "$work/$name" --seeds ${REID_SEEDS:-0} \
                --shard "$i/$shards" --tag gpu "$@" ${REID_EXTRA:-}
        ) &
    done
    wait
    local rows
    rows=$(ls "$work/$name"/rows-gpu-*.jsonl 2>/dev/null)
    [ -n "$rows" ] && cat $rows > "$out/$name-rows.jsonl"
}

for step in "${steps[@]}"; do
    if [[ $step == *+* ]]; then
        use_work  # made once here, not by each background step
        quiet=1
        for part in ${step//+/ }; do run_step "$part" & done
        wait
        quiet=0
    else
        run_step "$step"
    fi
done
cat "$out/summary.txt"
if [ -n "${BUNDLE:-}" ]; then
    tar czf "$BUNDLE" -C "$out" . && echo "bundled $(ls "$out" | wc -l) files into $BUNDLE"
fi
# exit 1 when a step failed or timed out (a skipped step is not a failure), so callers can tell
failed=$(grep -c ' rc=[1-9]' "$out/summary.txt")
[ "$failed" -eq 0 ] || { echo "$failed step(s) failed" >&2; exit 1; }
