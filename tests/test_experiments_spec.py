"""Experiment files: validation messages name the bad key, the grid expands, hashes mean what they say."""

from __future__ import annotations

import copy

import pytest

from privattrib.experiments import SpecError, load_builtin_spec, load_spec, validate_spec


def base_spec(tmp_path) -> dict:
    (tmp_path / "fakes").mkdir(exist_ok=True)
    return {
        "name": "t",
        "seed": 0,
        "data": {
            "size": 16,
            "sources": {"real": {"synthetic": {"n_identities": 8, "per_identity": 6}},
                        "fake": str(tmp_path / "fakes")},
            "per_class": {"train": 20, "val": 4, "test": 10},
        },
        "classifier": {"arch": "yu2019", "epochs": 1, "batch": 16},
        "obfuscations": ["none", "pixelate:b=[2,4]"],
        "scenarios": ["clean-train", "obfuscated-train"],
        "seeds": [0, 1],
    }


def test_grid_expands_brackets_and_orders_cells(tmp_path):
    spec = validate_spec(base_spec(tmp_path))
    assert spec.methods == ["none", "pixelate:b=2", "pixelate:b=4"]
    cells = spec.cells()
    # none only as clean-train; two pixelate settings x two scenarios; per seed
    assert len(cells) == 2 * (1 + 2 * 2)
    assert [c.seed for c in cells] == [0] * 5 + [1] * 5  # seed-major: the clean model first
    assert cells[0].spec == "none" and cells[0].scenario == "clean-train"
    assert len({c.file_stem for c in cells}) == len(cells)
    assert all("[" not in c.spec for c in cells)


def test_class_order_real_first_then_sorted(tmp_path):
    raw = base_spec(tmp_path)
    raw["data"]["size"] = 32  # the GAN zoo trains at 32, 64 or 128 px
    raw["data"]["sources"] = {"zeta": str(tmp_path / "fakes"), "real": {"synthetic": {}},
                              "alpha": {"gan": {"arch": "dcgan", "steps": 5}}}
    spec = validate_spec(raw)
    assert spec.class_names == ["real", "alpha", "zeta"]


def test_relative_paths_resolve_against_base_dir(tmp_path):
    raw = base_spec(tmp_path)
    raw["data"]["sources"]["fake"] = "fakes"
    spec = validate_spec(raw, base_dir=tmp_path)
    assert spec.data["sources"]["fake"] == {"kind": "auto", "path": str((tmp_path / "fakes").resolve()), "given": "fakes"}


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda r: r.pop("name"), "name"),
        (lambda r: r.update(seeds=[0, 0]), "seeds"),
        (lambda r: r.update(seeds=["a"]), "seeds[0]"),
        (lambda r: r["data"].update(size=4), "data.size"),
        (lambda r: r["data"]["sources"].pop("real"), "data.sources"),
        (lambda r: r["data"]["sources"].update(x={"gan": {"arch": "dcgan"}}), "data.sources.x.gan"),
        (lambda r: r["data"]["sources"].update(x={"magic": 1}), "data.sources.x"),
        (lambda r: r["data"]["sources"].update(real={"gan": {"arch": "dcgan", "steps": 1}}), "data.sources.real"),
        (lambda r: r["data"]["per_class"].update(train=0), "data.per_class.train"),
        (lambda r: r["data"]["per_class"].update(tests=3), "data.per_class"),
        (lambda r: r["classifier"].pop("arch"), "classifier.arch"),
        (lambda r: r["classifier"].update(epochs=-1), "classifier.epochs"),
        # refused before any data or GAN source is assembled, not by every cell afterwards
        (lambda r: r["classifier"].update(widht=3), "no option(s) ['widht']"),
        (lambda r: r["classifier"].update(amp="fp16"), "amp"),
        (lambda r: r["data"].update(size=7), "must be >= 8"),
        # yu2019 takes 48 px, the GAN zoo does not: refused before the real data are decoded for it
        (lambda r: (r["data"].update(size=48), r["data"]["sources"].update(fake={"gan": {"arch": "dcgan", "steps": 5}})),
         "cannot train at it"),
        (lambda r: (r["classifier"].update(keep_best=True), r["data"]["per_class"].update(val=0)), "keep_best"),
        (lambda r: r.update(obfuscations=["pixelate:b=[0,2]"]), "obfuscations[0]"),
        (lambda r: r.update(obfuscations=["nosuchmethod"]), "obfuscations[0]"),
        (lambda r: r.update(scenarios=["clean-train", "sideways"]), "scenarios[1]"),
        (lambda r: r.update(obfuscated_fraction=0), "obfuscated_fraction"),
        (lambda r: r.update(attacks=["teleport"]), "attacks"),
        (lambda r: r.update(attacks={"reid": {"arch": {"arch": "mcpherson2016", "dropuot": 0.2}}}), "attacks.reid"),
        (lambda r: r.update(attacks={"reid": {"arch": {"epochs": 0}}}), "attacks.reid"),
        (lambda r: r.update(attacks={"reid": {"arch": "nosuchnet"}}), "attacks.reid"),
        (lambda r: r.update(attacks={"reconstruct": {"unet": {"bsae": 16}}}), "attacks.reconstruct"),
        (lambda r: r.update(attacks={"reconstruct": {"unet": "unet"}}), "attacks.reconstruct.unet"),
        (lambda r: r.update(colour="red"), "top-level"),
        (lambda r: r.update(device="gpu"), "device"),
        (lambda r: r.update(resources={"cpus": 0}), "resources.cpus: must be a number > 0"),
        (lambda r: r.update(resources={"gpus": -0.5}), "resources.gpus"),
        (lambda r: r.update(resources={"gpus": 1.5}), "whole number"),
        (lambda r: r.update(resources={"gpus": "half"}), "resources.gpus"),
        (lambda r: r.update(resources={"tpus": 1}), "unknown key(s) ['tpus']"),
        (lambda r: r.update(resources=2), "resources: must be a mapping"),
    ],
)
def test_bad_specs_name_the_key(tmp_path, mutate, key):
    raw = base_spec(tmp_path)
    mutate(raw)
    with pytest.raises(SpecError) as info:
        validate_spec(raw)
    assert key in str(info.value)


def test_rows_hash_ignores_grid_but_not_data_or_classifier(tmp_path):
    raw = base_spec(tmp_path)
    h = validate_spec(raw).rows_hash()
    grown = copy.deepcopy(raw)
    grown["seeds"] = [0, 1, 2]
    grown["obfuscations"].append("blur:k=3")
    assert validate_spec(grown).rows_hash() == h
    for change in (lambda r: r["classifier"].update(epochs=2), lambda r: r["data"].update(size=32),
                   lambda r: r.update(obfuscated_fraction=0.5), lambda r: r.update(seed=3)):
        other = copy.deepcopy(raw)
        change(other)
        assert validate_spec(other).rows_hash() != h


def test_results_are_keyed_by_paths_as_written_not_where_they_resolve(tmp_path):
    """Moving a repository (its runs and the data beside it) keeps its results valid."""
    from privattrib.common import stable_hash

    def spec_at(root, fake="fakes", cache="cache"):
        root.mkdir(exist_ok=True)
        raw = base_spec(root)
        raw["data"]["sources"]["fake"] = fake
        raw["data"]["cache_dir"] = cache
        raw["attacks"] = {"reid": {"data": {"identities": "ids"}}}
        return validate_spec(raw, base_dir=root)

    here, moved = spec_at(tmp_path / "a"), spec_at(tmp_path / "b", cache="elsewhere/cache")
    assert here.data["sources"]["fake"]["path"] != moved.data["sources"]["fake"]["path"]
    assert here.data_hash() == moved.data_hash() and here.task_hashes() == moved.task_hashes()
    assert spec_at(tmp_path / "a", fake="./other/../fakes").data_hash() == here.data_hash()
    assert spec_at(tmp_path / "a", fake="other-fakes").data_hash() != here.data_hash()
    # rows and data of an older privattrib, keyed by resolved paths and cache_dir, still resume here
    legacy_data = {"seed": here.seed, "data": {**here.data, "sources": {
        name: {k: v for k, v in src.items() if k != "given"} for name, src in here.data["sources"].items()}}}
    assert here.data_hash(legacy=True) == stable_hash(legacy_data) != here.data_hash()
    assert here.data_hash(legacy=True) != moved.data_hash(legacy=True)
    # a spec that writes absolute paths and no cache_dir keeps the hashes it always had
    absolute = validate_spec(base_spec(tmp_path))
    assert absolute.data_hash() == absolute.data_hash(legacy=True)
    legacy_attribution = {"data": legacy_data, "obfuscated_fraction": here.obfuscated_fraction,
                          "classifier": here.classifier}
    assert stable_hash(legacy_attribution) in here.accepted_hashes()["attribution"]
    assert here.task_hashes(legacy=True)["reid"] in here.accepted_hashes()["reid"]


def test_task_hashes_are_independent(tmp_path):
    raw = base_spec(tmp_path)
    plain = validate_spec(raw).task_hashes()
    assert set(plain) == {"attribution", "attribution:fine-tune", "attribution:adv-train"}
    with_attacks = copy.deepcopy(raw)
    with_attacks["attacks"] = {"reid": {"data": "synthetic:n_identities=4,per_identity=4"}}
    hashes = validate_spec(with_attacks).task_hashes()
    assert hashes["attribution"] == plain["attribution"]  # adding an attack keeps attribution rows
    changed = copy.deepcopy(with_attacks)
    changed["classifier"]["epochs"] = 2
    changed["attacks"]["reid"]["variants"] = ["retrain"]  # variants only choose cells
    other = validate_spec(changed).task_hashes()
    assert other["attribution"] != hashes["attribution"] and other["reid"] == hashes["reid"]
    changed["attacks"]["reid"]["train_per_identity"] = 3
    assert validate_spec(changed).task_hashes()["reid"] != hashes["reid"]


def test_fine_tune_options_key_only_the_fine_tune_rows(tmp_path):
    from privattrib.common import stable_hash
    from privattrib.experiments.spec import FINE_TUNE_GROUP, Cell

    raw = base_spec(tmp_path)
    spec = validate_spec(raw)
    hashes = spec.task_hashes()
    # without fine-tune options both groups hash what the single attribution key hashed before
    old_key = {"data": spec.data_key(), "classifier": spec.classifier, "obfuscated_fraction": spec.obfuscated_fraction}
    assert hashes["attribution"] == hashes[FINE_TUNE_GROUP] == stable_hash(old_key)
    tuned = copy.deepcopy(raw)
    tuned["classifier"]["fine_tune_epochs"] = 3
    other = validate_spec(tuned)
    assert other.task_hashes()["attribution"] == hashes["attribution"]
    assert other.task_hashes()[FINE_TUNE_GROUP] != hashes[FINE_TUNE_GROUP]
    # rows stamped with the whole classifier (before the split) stay valid for clean/obfuscated-train
    assert other.task_hashes()[FINE_TUNE_GROUP] in other.accepted_hashes()["attribution"]
    assert {Cell("pixelate:b=4", s, 0).key_group for s in ("clean-train", "obfuscated-train", "fine-tune")} == {
        "attribution", FINE_TUNE_GROUP}
    assert Cell("pixelate:b=4", "fine-tune", 0).task == "attribution"  # the report's task is unchanged


def test_yaml_file_and_builtin_demo(tmp_path):
    import yaml

    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(base_spec(tmp_path)))
    assert load_spec(path).name == "t"
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="YAML"):
        load_spec(path)
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.yaml")
    demo = validate_spec(load_builtin_spec("demo"))
    methods = {s.split(":")[0] for s in demo.methods}
    assert methods == {"none", "pixelate", "blur", "dp-pix", "dp-blur", "svd-mp"}
    assert demo.scenarios == ["clean-train", "obfuscated-train", "fine-tune"]


def test_example_specs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "examples").glob("*.yaml")):
        spec = load_spec(path, base_dir=root)
        assert spec.class_names[0] == "real"


def test_resources_are_placement_only(tmp_path):
    """Fractions are allowed, and asking for other resources changes no results key (rows stay valid)."""
    plain = validate_spec(base_spec(tmp_path))
    raw = base_spec(tmp_path)
    raw["resources"] = {"cpus": 0.5, "gpus": 0.25}
    placed = validate_spec(raw)
    assert placed.resources == {"cpus": 0.5, "gpus": 0.25} and plain.resources == {}
    assert placed.task_hashes() == plain.task_hashes() and placed.data_hash() == plain.data_hash()
    assert placed.to_dict()["resources"] == {"cpus": 0.5, "gpus": 0.25}


def test_adversarial_training_is_a_grid_option_keyed_only_for_its_rows(tmp_path):
    from privattrib.experiments.spec import ADV_TRAIN_GROUP, FINE_TUNE_GROUP, Cell

    raw = base_spec(tmp_path)
    raw["scenarios"] = ["clean-train", "fine-tune", "fine-tune+adv", "obfuscated-train+adv"]
    spec = validate_spec(raw)
    assert {c.scenario for c in spec.cells()} == set(raw["scenarios"])
    assert Cell("pixelate:b=4", "fine-tune+adv", 0).key_group == ADV_TRAIN_GROUP
    assert Cell("pixelate:b=4", "obfuscated-train+adv", 0).key_group == ADV_TRAIN_GROUP
    hashes = spec.task_hashes()
    trained = copy.deepcopy(raw)
    trained["classifier"]["adv_train"] = {"eps": 2, "steps": 2}
    other = validate_spec(trained).task_hashes()
    # adversarial-training options invalidate the +adv rows only
    assert other["attribution"] == hashes["attribution"] and other[FINE_TUNE_GROUP] == hashes[FINE_TUNE_GROUP]
    assert other[ADV_TRAIN_GROUP] != hashes[ADV_TRAIN_GROUP]
    assert ADV_TRAIN_GROUP not in validate_spec(base_spec(tmp_path)).accepted_hashes()
    bad = copy.deepcopy(raw)
    bad["classifier"]["adv_train"] = {"eps": 0.5}
    with pytest.raises(SpecError, match=r"classifier: adv_train.eps=0.5 is not allowed"):
        validate_spec(bad)
    bad["classifier"]["adv_train"] = {"budget": 4}
    with pytest.raises(SpecError, match="adv_train: unknown option"):
        validate_spec(bad)
    bad = copy.deepcopy(raw)
    bad["scenarios"] = ["clean-train+adv"]
    with pytest.raises(SpecError, match="unknown scenario 'clean-train\\+adv'"):
        validate_spec(bad)


def test_run_seeds_option_picks_a_subset_of_the_spec_seeds():
    from privattrib.cli.experiments import _seed_subset

    assert _seed_subset("2,0", [0, 1, 2]) == [0, 2]  # the spec's order
    assert _seed_subset("1", [0, 1, 2]) == [1]
    with pytest.raises(SpecError, match="not among the spec's seeds"):
        _seed_subset("5", [0, 1, 2])
    with pytest.raises(SpecError, match="list of integers"):
        _seed_subset("a", [0, 1, 2])
