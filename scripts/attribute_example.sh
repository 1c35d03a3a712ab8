#!/usr/bin/env bash
# The README's worked example of `privattrib train-attributor` and `privattrib attribute`:
# train an attributor on real CelebA against two GAN-zoo architectures (trained here on the real
# training identities only), then attribute a folder of held-out images before and after
# `privattrib obfuscate`, and print a table of what it measured.
#
#   scripts/attribute_example.sh [OUT]          # default OUT=runs/attribute-example
#
# Knobs (environment): SIZE=32 PRESET=tiny PER_CLASS=2500 EPOCHS=10 WIDTH="fmap_base=256 fmap_max=128"
# (the CPU example files' yu2019 width; WIDTH= for the paper's), HELD_OUT=200 (samples per GAN in the
# held-out folder), CELEBA=../shared/data/celeba, PRIVATTRIB=.venv/bin/privattrib, PYTHON=.venv/bin/python.
# SIZE=64 PRESET=cpu-64 is the 64 px version (the GANs alone take 8 minutes on an idle CPU).
# OMP_NUM_THREADS=1 is fastest on a shared machine. The held-out CelebA crops stay under OUT:
# never commit them (CelebA's terms).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/attribute-example}
SIZE=${SIZE:-32}
PRESET=${PRESET:-tiny}
PER_CLASS=${PER_CLASS:-2500}
EPOCHS=${EPOCHS:-10}
WIDTH=${WIDTH-fmap_base=256 fmap_max=128}
HELD_OUT=${HELD_OUT:-200}
CELEBA=${CELEBA:-../shared/data/celeba}
PA=${PRIVATTRIB:-.venv/bin/privattrib}
PY=${PYTHON:-.venv/bin/python}
SPECS=("pixelate:b=2" "pixelate:b=4" "blur:k=5" "dp-pix:b=4,m=1,epsilon=1")
mkdir -p "$OUT"
MODEL="$OUT/celeba-vs-zoo.pt"
OPTIONS=()
for option in $WIDTH; do OPTIONS+=(--option "$option"); done

set -x
time $PA train-attributor --real "$CELEBA" --fake "dcgan=zoo:dcgan:$PRESET" --fake "wgan-gp=zoo:wgan-gp:$PRESET" \
    --size "$SIZE" --per-class "$PER_CLASS" --epochs "$EPOCHS" "${OPTIONS[@]}" --work-dir "$OUT/work" -o "$MODEL" \
    --no-progress \
    | tee "$OUT/train.txt"
set +x

# The held-out folder: the real test split (CelebA identities the model never saw), cut to the model's
# input exactly as its training images were (Yu et al.'s crop, resized), and fresh samples of each GAN
# from a latent seed other than the one its training images were drawn with.
rm -rf "$OUT/held-out"
$PY - "$MODEL" "$CELEBA" "$OUT/held-out" "$HELD_OUT" <<'PY' > "$OUT/gan-runs.txt"
import json, sys
from pathlib import Path
from privattrib.data import save_png
from privattrib.data.preprocess import Preprocess, prepare

model, celeba, out, n = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
block = json.loads(model.with_suffix(".json").read_text())["attributor"]
size = block["image_size"]
prep = Preprocess(size=(size, size), crop=block["preprocess"]["crop"], channels=block["in_channels"])
real = [Path(k).name for k in block["data"]["test_keys"] if k.startswith("real/")][:n]  # real/real/000123.jpg
for name in real:
    save_png(out / "real" / (Path(name).stem + ".png"), prepare(celeba / "img_align_celeba" / name, prep).transpose(1, 2, 0))
for name, info in block["data"]["sources"].items():
    if "run_dir" in info:
        print(name, info["run_dir"], int(info["sample_seed"]) + 1)
PY
while read -r name run seed; do
    $PA gan sample "$run" -n "$HELD_OUT" --seed "$seed" -o "$OUT/held-out/$name" --device cpu
done < "$OUT/gan-runs.txt"

set -x
time $PA attribute "$OUT/held-out" --model "$MODEL" --csv "$OUT/attributed-clean.csv" > "$OUT/attributed-clean.txt"
for i in "${!SPECS[@]}"; do
    $PA obfuscate "$OUT/held-out" -o "$OUT/obfuscated-$i" --method "${SPECS[$i]}" --seed 0 > /dev/null
    $PA attribute "$OUT/obfuscated-$i" --model "$MODEL" --csv "$OUT/attributed-$i.csv" > /dev/null
done
set +x

$PY - "$OUT" "${SPECS[@]}" <<'PY' | tee "$OUT/summary.md"
import csv, sys
from pathlib import Path

out, specs = Path(sys.argv[1]), sys.argv[2:]
runs = [("none (clean)", out / "attributed-clean.csv")] + [(s, out / f"attributed-{i}.csv") for i, s in enumerate(specs)]
print("| held-out images | accuracy | real | dcgan | wgan-gp | GAN images called real | mean p(real) of GAN images |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label, path in runs:
    rows = [r for r in csv.DictReader(open(path)) if r["status"] == "ok"]
    def true(r):
        return Path(r["file"]).parent.name
    classes = sorted({true(r) for r in rows}, key=lambda c: (c != "real", c))
    acc = {c: sum(r["predicted"] == c for r in rows if true(r) == c) / sum(true(r) == c for r in rows) for c in classes}
    fakes = [r for r in rows if true(r) != "real"]
    overall = sum(r["predicted"] == true(r) for r in rows) / len(rows)
    laundered = sum(r["predicted"] == "real" for r in fakes) / len(fakes)
    p_real = sum(float(r["p_real"]) for r in fakes) / len(fakes)
    print(f"| {label} ({len(rows)}) | {overall:.1%} | {acc.get('real', 0):.1%} | {acc.get('dcgan', 0):.1%} | "
          f"{acc.get('wgan-gp', 0):.1%} | {laundered:.1%} | {p_real:.3f} |")
PY
