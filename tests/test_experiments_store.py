"""The results store: atomic per-cell rows, results.csv as a regenerated view, refusal on a changed spec."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from privattrib.experiments.store import ResultsStore, SpecChangedError, read_csv, rows_to_csv


def _row(spec="pixelate:b=4", scenario="clean-train", seed=0, acc=0.5, rows_hash="h1"):
    return {
        "scenario": scenario, "method": spec.split(":")[0], "spec": spec, "seed": seed, "epsilon": None,
        "param_b": 4, "accuracy": acc, "acc_real": 0.9, "acc_dcgan": np.float32(0.1), "chance": 0.5,
        "laundering_rate": 0.2, "n_train": 10, "n_test": 4, "mse": 1.5, "psnr": float("inf"), "ssim": 0.9,
        "wall_s": 0.1, "confusion_matrix": np.array([[2, 0], [1, 1]]), "per_class_accuracy": {"real": 1.0},
        "rows_hash": rows_hash,
    }


def test_rows_round_trip_and_csv_columns(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_row("a", _row())
    store.write_row("b", _row(spec="none", acc=0.9))
    assert store.has("a") and not store.has("c")
    rows = store.rows(["b", "a", "c"])
    assert [r["spec"] for r in rows] == ["none", "pixelate:b=4"]
    assert rows[0]["psnr"] is None  # inf is stored as null, never as invalid JSON
    assert rows[0]["confusion_matrix"] == [[2, 0], [1, 1]]
    path = store.write_csv(rows)
    table = read_csv(path)
    assert len(table) == 2
    header = path.read_text().splitlines()[0].split(",")
    assert header[:6] == ["scenario", "method", "spec", "epsilon", "seed", "accuracy"]
    for col in ("param_b", "acc_real", "acc_dcgan", "chance", "laundering_rate", "n_train", "n_test",
                "mse", "psnr", "ssim", "wall_s", "confusion_matrix"):
        assert col in header
    assert "per_class_accuracy" not in header
    assert table[1]["accuracy"] == 0.5 and table[1]["param_b"] == 4
    assert json.loads(table[1]["confusion_matrix"]) == [[2, 0], [1, 1]]
    assert math.isclose(table[1]["acc_dcgan"], 0.1, rel_tol=1e-6)


def test_no_temp_files_left_and_rows_are_whole(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(5):
        store.write_row(f"r{i}", _row(seed=i))
    assert sorted(p.name for p in store.cells_dir.iterdir()) == [f"r{i}.json" for i in range(5)]
    for p in store.cells_dir.iterdir():
        json.loads(p.read_text())


def test_changed_spec_refused_then_moved_aside_with_force(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_row("a", _row(rows_hash="old"))
    (tmp_path / "experiment.json").write_text(json.dumps(
        {"task_hashes": {"attribution": "old"}, "task_keys": {"attribution": {"classifier": {"epochs": 1}}}}))
    store.check_compatible({"attribution": "old"}, {"attribution": {"classifier": {"epochs": 1}}})  # same spec
    with pytest.raises(SpecChangedError, match="attribution: classifier"):
        store.check_compatible({"attribution": "new"}, {"attribution": {"classifier": {"epochs": 2}}})
    assert store.has("a")
    store.check_compatible({"attribution": "new"}, {"attribution": {"classifier": {"epochs": 2}}}, force=True)
    assert not store.has("a")
    stale = list((tmp_path / "stale").rglob("a.json"))
    assert len(stale) == 1  # moved, never deleted


def test_each_task_is_checked_against_its_own_key(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_row("attr", _row(rows_hash="A1"))
    store.write_row("reid", {**_row(rows_hash="R1"), "task": "reid"})
    # adding an attack, or changing the reid options, leaves the attribution rows valid
    store.check_compatible({"attribution": "A1", "reid": "R1", "reconstruct": "C1"}, {})
    with pytest.raises(SpecChangedError, match="reid"):
        store.check_compatible({"attribution": "A1", "reid": "R2"}, {"attribution": {}, "reid": {}})
    # a task the spec no longer runs only hides its rows
    store.check_compatible({"attribution": "A1"}, {})
    store.check_compatible({"attribution": "A1", "reid": "R2"}, {}, force=True)
    assert store.has("attr") and not store.has("reid")


def test_changed_fine_tune_options_invalidate_only_fine_tune_rows(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_row("clean", _row(rows_hash="A1"))
    store.write_row("obf", _row(scenario="obfuscated-train", rows_hash="A1"))
    store.write_row("ft", _row(scenario="fine-tune", rows_hash="F1"))
    store.check_compatible({"attribution": "A1", "attribution:fine-tune": "F1"}, {})
    with pytest.raises(SpecChangedError, match=r"\(attribution:fine-tune changed\)"):
        store.check_compatible({"attribution": "A1", "attribution:fine-tune": "F2"}, {})
    store.check_compatible({"attribution": "A1", "attribution:fine-tune": "F2"}, {}, force=True)
    assert store.has("clean") and store.has("obf") and not store.has("ft")
    # a set of accepted stamps: rows written with the whole classifier key before the split
    store.write_row("legacy", _row(rows_hash="F2"))
    store.check_compatible({"attribution": {"A1", "F2"}, "attribution:fine-tune": "F2"}, {})


def test_rows_stamped_with_the_legacy_whole_spec_hash_still_resume(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_row("a", _row(rows_hash="whole"))
    store.check_compatible({"attribution": "A1"}, {}, legacy_hash="whole")
    with pytest.raises(SpecChangedError):
        store.check_compatible({"attribution": "A1"}, {}, legacy_hash="other")


def test_foreign_rows_without_manifest_are_refused(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_row("a", _row(rows_hash="other"))
    with pytest.raises(SpecChangedError):
        store.check_compatible({"attribution": "mine"}, {})


def test_csv_of_no_rows_is_empty_but_valid():
    assert rows_to_csv([]).strip() == ""


def test_changed_spec_without_finished_cells_is_accepted(tmp_path):
    # a run killed while building its data or GAN sources left a manifest but no row: nothing to protect
    store = ResultsStore(tmp_path)
    (tmp_path / "experiment.json").write_text(json.dumps({"rows_hash": "old", "rows_key": {"classifier": {"epochs": 1}}}))
    store.check_compatible({"attribution": "new"}, {"attribution": {"classifier": {"epochs": 2}}})
