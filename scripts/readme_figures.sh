#!/usr/bin/env bash
# Makes the README's before/after picture with the `privattrib obfuscate` command itself.
# The face is one of privattrib's procedurally drawn synthetic faces (no real person, no download).
set -euo pipefail
cd "$(dirname "$0")/.."
PA=.venv/bin/privattrib
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python - "$work/original/face.png" <<'PY'
import sys
from privattrib.data import synthetic_faces, save_png
faces = synthetic_faces(n_identities=1, per_identity=1, size=128, seed=3)
save_png(sys.argv[1], faces.images[0].transpose(1, 2, 0))
PY
specs=("pixelate:b=8" "blur:k=15" "dp-pix:b=8,m=1,epsilon=1" "dp-pix:b=16,m=16,epsilon=0.5" "dp-blur:b=4,m=1,epsilon=1,k=15" "svd-mp:k=4,epsilon=1")
for i in "${!specs[@]}"; do
    "$PA" obfuscate "$work/original" -o "$work/out$i" --method "${specs[$i]}" --seed 0 >/dev/null
done
.venv/bin/python - "$work" "${specs[@]}" <<'PY'
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from privattrib.data import load_image
work, specs = sys.argv[1], sys.argv[2:]
panels = [("original", f"{work}/original/face.png")] + [
    (s, f"{work}/out{i}/face.png") for i, s in enumerate(specs)]
fig, axes = plt.subplots(1, len(panels), figsize=(2.0 * len(panels), 2.35))
for ax, (title, path) in zip(axes, panels):
    ax.imshow(load_image(path, 3))
    ax.set_title(title.replace(",", ",\n", 1) if len(title) > 14 else title, fontsize=7)
    ax.axis("off")
fig.tight_layout()
fig.savefig("docs/img/obfuscation-examples.png", dpi=110)
print("wrote docs/img/obfuscation-examples.png")
PY
