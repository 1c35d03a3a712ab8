"""benchmarks/reid_grid.py, the attack grid of docs/results-attacks.md: the parts that decide what a
time-limited GPU lease gets done (cell order) and what its tables claim (seeds per row)."""

import json

from benchmark_scripts import load_script, run_args

reid_grid = load_script("reid_grid")


def _run_args(*argv):
    return run_args(reid_grid, ["run", *argv])


def test_protocols_run_in_the_order_given():
    args = _run_args("--protocols", "yaleb-48/12", "yaleb-8/2", "--seeds", "0", "--no-reconstruct")
    order = list(dict.fromkeys(c["protocol"] for c in reid_grid.build_cells(args)))
    assert order == ["yaleb-48/12", "yaleb-8/2"]


def test_recon_methods_all_means_every_obfuscation_of_the_grid():
    args = _run_args("--recon-only", "--seeds", "0", "--recon-methods", "all")
    methods = [c["method"] for c in reid_grid.build_cells(args)]
    assert sorted(methods) == sorted(m for m in reid_grid.METHODS if m != "none") and len(methods) == 17


def _recon_row(method, seed, restored, protocol="yaleb-48/12"):
    return {"attack": "reconstruct", "protocol": protocol, "grid_method": method, "seed": seed,
            "arch": "mcpherson2016", "unet_cfg": {"base": 32, "epochs": 30}, "n_train": 10, "n_test": 4,
            "image_shape": [1, 96, 96], "psnr_obfuscated": 20.0, "psnr_restored": 25.0,
            "ssim_obfuscated": 0.5, "ssim_restored": 0.8, "reid_clean": 0.9, "reid_obfuscated": 0.1,
            "reid_restored": restored, "wall_s": 1.0, "device": "cpu"}


def test_reconstruction_table_says_which_seeds_each_row_averages(tmp_path, capsys):
    rows = [_recon_row("pixelate:b=8", 0, 0.5), _recon_row("pixelate:b=8", 1, 0.7), _recon_row("blur:k=45", 0, 0.9)]
    (tmp_path / "rows-x-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    reid_grid.main(["table", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert "| `pixelate:b=8` | 0, 1 | 20.00 | 25.00 | 0.500 | 0.800 | 90.0 ± 0.0 | 10.0 ± 0.0 | 60.0 ± 14.1 |" in lines
    assert "| `blur:k=45` | 0 | 20.00 | 25.00 | 0.500 | 0.800 | 90.0 | 10.0 | 90.0 |" in lines


def test_reconstruction_rows_of_two_splits_get_a_table_each(tmp_path, capsys):
    rows = [_recon_row("pixelate:b=8", 0, 0.5, "yaleb-8/2"), _recon_row("pixelate:b=8", 0, 0.9, "yaleb-48/12")]
    (tmp_path / "rows-x-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    reid_grid.main(["table", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "base 32, 30 epochs), yaleb-8/2:" in out and "base 32, 30 epochs), yaleb-48/12:" in out
    assert "| 50.0 |" in out and "| 90.0 |" in out and "70.0" not in out  # not averaged across splits


def test_rows_returned_twice_by_one_lease_count_once(tmp_path, capsys):
    # a lease's second call returns every row of its first call again (the shards share WORK)
    first = [_recon_row("pixelate:b=8", 0, 0.5)]
    both = first + [_recon_row("pixelate:b=8", 1, 0.7)]
    for row in both:
        row["cell_key"] = f"key-{row['seed']}"
    (tmp_path / "rows-gpu-call1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    (tmp_path / "rows-gpu-call2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in both))
    reid_grid.main(["table", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| `pixelate:b=8` | 0, 1 |" in out and "\n2 rows," in out


def test_shards_starting_together_never_read_a_half_written_sets_file(tmp_path):
    import threading

    sets, out = tmp_path / "sets", tmp_path / "out"
    sets.mkdir()
    out.mkdir()
    (sets / "yaleb.npz").write_bytes(b"x" * 10)
    errors = []

    def check():
        for _ in range(200):
            try:
                reid_grid.check_sets(out, sets)
            except Exception as exc:  # noqa: BLE001 - any failure is the bug
                errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_a_finished_row_beats_a_failed_one_for_the_same_cell(tmp_path, capsys):
    good = {**_recon_row("pixelate:b=8", 0, 0.5), "cell_key": "k"}
    failed = {"attack": "reconstruct", "error": "RuntimeError('out of memory')", "cell_key": "k", "seed": 0}
    (tmp_path / "rows-a.jsonl").write_text(json.dumps(failed) + "\n" + json.dumps(good) + "\n")
    (tmp_path / "rows-b.jsonl").write_text(json.dumps(failed) + "\n")  # a copy of the first attempt
    reid_grid.main(["table", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| `pixelate:b=8` | 0 |" in out and "FAILED" not in out and "\n1 rows," in out


def test_grid_methods_are_checked_before_any_cell(tmp_path):
    import pytest

    assert reid_grid.generator_eps("adv-gen:eps=8") == 8.0 and reid_grid.generator_eps("adv-gen") == 4.0
    for bad, fragment in [("adv-gen:eps=4,norm=l2", "eps=E only"), ("adv-gen:eps=0.5", "eps must be a number >= 1"),
                          ("adv-gen:eps=x", "eps must be a number"), ("adv:eps=4,model=a.pt", "sets model="),
                          ("adv:eps=0", "eps"), ("pixelate:b=0", "b")]:
        with pytest.raises(ValueError, match=fragment):
            reid_grid.check_grid_methods(["none", bad])
    reid_grid.check_grid_methods(["none", "adv:eps=4,norm=l2", "adv-gen:eps=8", "dp-pix:b=1,m=1,epsilon=50"])
    with pytest.raises(SystemExit, match="--methods: adv-gen:eps=4,norm=l2"):
        reid_grid.main(["run", "--sets", str(tmp_path / "sets"), "--out", str(tmp_path / "out"),
                        "--methods", "none", "adv-gen:eps=4,norm=l2"])
    assert not (tmp_path / "out").exists()


def test_pretrain_others_only_makes_every_model_of_a_target_subset_protocol_pretrained():
    args = _run_args("--protocols", "celeba-500of2000-4/1", "yaleb-8/2", "--seeds", "0", "--no-reconstruct",
                     "--methods", "none", "adv:eps=4", "--pretrain-others", "only", "--surrogate-pretrain-others",
                     "--transfer-archs", "resnet18:width=16")
    cells = reid_grid.build_cells(args)
    celeba = [c for c in cells if c["protocol"] == "celeba-500of2000-4/1"]
    # the clean reference once (retrain on "none" is the clean model), both variants for the method
    assert sorted((c["arch"], c["method"], c["variant"]) for c in celeba) == [
        ("mcpherson2016", "adv:eps=4", "no-retrain"), ("mcpherson2016", "adv:eps=4", "retrain"),
        ("mcpherson2016", "none", "retrain"), ("resnet18", "adv:eps=4", "no-retrain"),
        ("resnet18", "none", "no-retrain")]
    assert all(c.get("pretrain") == "others" for c in celeba)
    # Yale B has nobody outside its targets: its models stay as they were, its surrogate too
    yaleb = [c for c in cells if c["protocol"] == "yaleb-8/2"]
    assert yaleb and not any(c.get("pretrain") for c in yaleb)
    assert reid_grid.surrogate_path(args, "celeba-500of2000-4/1", 0).name.endswith("-w1000-pre.pt")
    assert reid_grid.surrogate_path(args, "yaleb-8/2", 0).name.endswith("-w1000.pt")
    adv = next(c for c in celeba if c["method"] == "adv:eps=4")
    plain = _run_args("--protocols", "celeba-500of2000-4/1", "--seeds", "0", "--methods", "adv:eps=4",
                      "--pretrain-others", "only")
    assert reid_grid.cell_key(adv, args) != reid_grid.cell_key(adv, plain)  # another surrogate, another cell


def test_pretrain_others_also_keeps_the_models_trained_from_scratch():
    args = _run_args("--protocols", "celeba-500of2000-4/1", "--seeds", "0", "--no-reconstruct",
                     "--methods", "none", "pixelate:b=4", "--pretrain-others")
    kinds = sorted((c["method"], c["variant"], c.get("pretrain") or "") for c in reid_grid.build_cells(args))
    # the cells an earlier `--pretrain-others` made: a rerun of its command adds nothing
    assert kinds == [("none", "retrain", ""), ("none", "retrain", "others"),
                     ("pixelate:b=4", "no-retrain", ""), ("pixelate:b=4", "retrain", ""),
                     ("pixelate:b=4", "retrain", "others")]


def test_auto_shards_share_the_cells_each_once(tmp_path):
    import os
    import subprocess
    import sys

    from benchmark_scripts import BENCHMARKS

    from privattrib.data import synthetic_faces

    sets, out = tmp_path / "sets", tmp_path / "out"
    sets.mkdir()
    reid_grid._save(sets / "yaleb.npz", synthetic_faces(n_identities=4, per_identity=10, size=16, channels=1, seed=0),
                    {"source": "synthetic"})
    argv = [sys.executable, str(BENCHMARKS / "reid_grid.py"), "run", "--sets", str(sets), "--out", str(out),
            "--device", "cpu", "--protocols", "yaleb-8/2", "--seeds", "0", "1", "--methods", "none", "pixelate:b=4",
            "--epochs-scale", "0.03", "--no-reconstruct", "--threads", "1", "--compact", "--shard", "auto"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    rows = [json.loads(line) for f in sorted(out.glob("rows-*.jsonl")) for line in f.read_text().splitlines()]
    keys = [r["cell_key"] for r in rows]
    assert len(keys) == len(set(keys)) == 6 and not any("error" in r for r in rows), logs  # 2 seeds x 3 cells
    claims = reid_grid.CellClaims(out)  # every claim was let go: each cell could be taken, but is done
    assert not any(claims.take(k) for k in keys) and not claims.held




def test_a_cell_is_held_while_it_runs_and_free_when_its_holder_dies(tmp_path):
    import subprocess
    import sys
    import textwrap

    from benchmark_scripts import BENCHMARKS

    mine = reid_grid.CellClaims(tmp_path)
    assert mine.take("k1") and not reid_grid.CellClaims(tmp_path).take("k1")  # held: another process waits
    mine.release("k1")
    assert reid_grid.CellClaims(tmp_path).take("k1")
    # a holder killed mid-cell: the kernel drops its lock, the cell is free again
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time; sys.path.insert(0, {str(BENCHMARKS)!r})
        import reid_grid; from pathlib import Path
        assert reid_grid.CellClaims(Path({str(tmp_path)!r})).take("k2"); print("held", flush=True); time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert not mine.take("k2")
    holder.kill()
    holder.wait()
    assert mine.take("k2")
    (tmp_path / "rows-x.jsonl").write_text(json.dumps({"cell_key": "k3"}) + "\n")
    assert not mine.take("k3")  # its row is written: nothing to do
    # a failed cell stays held until the process ends: the others do not repeat the failure
    assert mine.take("k4")
    mine.release("k4", failed=True)
    assert not reid_grid.CellClaims(tmp_path).take("k4")
