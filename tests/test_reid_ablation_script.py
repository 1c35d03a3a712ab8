"""benchmarks/reid_ablation.py (issue 18): which cells it runs and what its ratio tables say."""

import json

import pytest
from benchmark_scripts import load_script, run_args

ablation = load_script("reid_ablation")


def _run_args(*argv):
    return run_args(ablation, ["run", "--sets", "s", "--out", "o", *argv])


def test_noise_factors_share_the_baseline_plain_cell_and_light_is_yale_b_only():
    args = _run_args("--data", "yaleb", "celeba", "--factors", "baseline", "noise-per-epoch", "test-releases-4",
                     "even-light", "--seeds", "0", "1")
    cells = ablation.build_cells(args)
    yale = [c for c in cells if c["data"] == "yaleb"]
    plain = [c for c in yale if c["method"].startswith("pixelate")]
    # baseline's plain cell serves both noise factors; even light changes the faces, so it has its own
    assert sorted(c["factor"] for c in plain) == ["baseline", "baseline", "even-light", "even-light"]
    assert len(yale) == 2 * (2 + 4 * 4)  # per seed: 2 plain cells, 4 factors x 4 epsilons
    assert not any(c["factor"] == "even-light" for c in cells if c["data"] == "celeba")
    assert len({ablation.cell_key(c) for c in cells}) == len(cells)


def test_every_scale_keeps_fans_noise_per_cell_and_cell_grid():
    assert ablation.methods(4) == ["pixelate:b=16", "dp-pix:b=16,m=16,epsilon=0.1", "dp-pix:b=16,m=16,epsilon=0.3",
                                   "dp-pix:b=16,m=16,epsilon=0.5", "dp-pix:b=16,m=16,epsilon=1"]
    assert ablation.methods(1)[-1] == "dp-pix:b=4,m=1,epsilon=1"  # 255*1/(4*4) = 255*16/(16*16) per cell
    assert ablation.set_name("yaleb", "6x7", 4) == "yaleb-112x96.npz"  # 7 x 6 cells of 16 px, AT&T's shape
    assert ablation.set_name("yaleb", "6x6", 1) == "yaleb-24x24.npz"


def _row(factor, method, seed, curve):
    cell = {**ablation.resolve("yaleb", factor, method, 1), "seed": seed, "epochs": len(curve), "batch_size": 32,
            "factor": factor}
    return {"attack": "reid", "seed": seed, "accuracy": curve[-1], "accuracy_by_epoch": curve, "ablation": cell,
            "cell_key": ablation.cell_key(cell), "image_shape": [1, 24, 24], "wall_s": 1.0, "device": "cpu"}


def test_ratio_table_reads_the_curves_at_the_epoch_asked(tmp_path, capsys):
    rows = []
    for seed in (0, 1):
        rows.append(_row("baseline", "pixelate:b=4", seed, [0.2, 0.4, 0.5]))
        for i, eps in enumerate(ablation.EPSILONS):
            rows.append(_row("baseline", ablation.methods(1)[i + 1], seed, [0.1, 0.1 * (i + 1), 0.05 * (i + 1)]))
            rows.append(_row("noise-per-epoch", ablation.methods(1)[i + 1], seed, [0.1, 0.1, 0.4]))
    (tmp_path / "rows-ablation-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ablation.main(["table", "--out", str(tmp_path), "--at", "2", "3"])
    out = capsys.readouterr().out
    # after 2 epochs: plain 40%, DP 10/20/30/40% -> ratios 0.25 0.50 0.75 1.00
    assert "| baseline | 2 | 40.0 ± 0.0 | 10.0 ± 0.0 | 20.0 ± 0.0 | 30.0 ± 0.0 | 40.0 ± 0.0 | " \
           "0.25 ± 0.00 | 0.50 ± 0.00 | 0.75 ± 0.00 | 1.00 ± 0.00 |" in out
    # after 3: the noise factor (sharing baseline's plain cell, 50%) keeps 0.80 at every epsilon
    assert "| noise-per-epoch | 2 | 50.0 ± 0.0 | 40.0 ± 0.0 | 40.0 ± 0.0 | 40.0 ± 0.0 | 40.0 ± 0.0 | " \
           "0.80 ± 0.00 | 0.80 ± 0.00 | 0.80 ± 0.00 | 0.80 ± 0.00 | 0.76 |" in out
    assert "| Fan 2018, AT&T | - | 96.25 | 3.75 | 18.75 | 43.75 | 77.5 | 0.04 | 0.19 | 0.45 | 0.81 | - |" in out


def test_bad_scale_is_refused():
    with pytest.raises(SystemExit):
        _run_args("--scale", "0")


def test_best_epoch_table_reads_each_curves_maximum(tmp_path, capsys):
    rows = [_row("baseline", "pixelate:b=4", 0, [0.2, 0.6, 0.5])]
    rows += [_row("baseline", m, 0, [0.3, 0.1, 0.2]) for m in ablation.methods(1)[1:]]
    (tmp_path / "rows-ablation-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ablation.main(["table", "--out", str(tmp_path), "--best-epoch"])
    out = capsys.readouterr().out
    assert "after the last epoch run" in out and "| baseline | 1 | 50.0 | 20.0 |" in out
    assert "best epoch on the test set" in out and "| baseline | 1 | 60.0 | 30.0 |" in out


def test_a_ratio_pairs_each_seed_with_its_own_plain_cell(tmp_path, capsys):
    rows = [_row("baseline", "pixelate:b=4", 0, [0.5]), _row("baseline", "pixelate:b=4", 1, [0.1])]
    rows += [_row("baseline", m, 0, [0.25]) for m in ablation.methods(1)[1:]]  # seed 0 only so far
    (tmp_path / "rows-ablation-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ablation.main(["table", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| baseline | 1 | 30.0 ± 28.3 | 25.0 | 25.0 | 25.0 | 25.0 | 0.50 | 0.50 | 0.50 | 0.50 |" in out


def test_plot_writes_a_png_of_the_ratios(tmp_path):
    rows = [_row("baseline", "pixelate:b=4", s, [0.5]) for s in (0, 1)]
    rows += [_row("baseline", m, s, [0.1 * (i + 1)]) for s in (0, 1) for i, m in enumerate(ablation.methods(1)[1:])]
    (tmp_path / "rows-ablation-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = tmp_path / "ratios.png"
    ablation.main(["plot", "--out", str(tmp_path), "--png", str(png), "--epochs", "1", "--factors", "baseline"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no yaleb rows"):
        ablation.main(["plot", "--out", str(tmp_path), "--png", str(png), "--epochs", "100"])


def test_cells_counts_dark_and_clipped_cells_per_lighting(tmp_path, capsys):
    import numpy as np

    from privattrib.data import LabeledImages

    keys = ["yaleB01/yaleB01_P00A+000E+00.pgm", "yaleB01/yaleB01_P00A+130E+20.pgm"]
    images = np.stack([np.full((1, 28, 24), 128, np.uint8), np.zeros((1, 28, 24), np.uint8)])  # lit, black
    faces = LabeledImages(images=images, labels=np.zeros(2, np.int64), class_names=["yaleB01"], keys=keys,
                          identities=np.zeros(2, np.int64))
    ablation.grid._save(tmp_path / "yaleb-28x24.npz", faces, {})
    ablation.main(["cells", "--sets", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| all 64 lighting conditions (2 faces) | 64 | 50% |" in out  # the black face: every cell dark
    assert "| light within 25 degrees (1 faces) | 128 | 0% |" in out
