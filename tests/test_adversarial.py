"""The ``adv`` method: PGD against a surrogate, its exact uint8 budget, determinism, refusals, and
the adversarial-training transform."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from privattrib.attribution.models import make_classifier, save_classifier
from privattrib.obfuscation import make
from privattrib.obfuscation import adversarial as A
from privattrib.training import TrainConfig, predict, train_classifier
from test_attribution_scenarios import CLASSES, tiny_set

SIZE = 16


def pattern_set(n_per_class: int, seed: int, size: int = SIZE):
    """Three classes told apart by a fixed +-25 grey-level pattern (none for ``real``): the
    scenario tests' tiny set, as arrays."""
    data = tiny_set(n_per_class, seed, "adv", size=size)
    return data.images, data.labels


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    """A small CNN trained to tell the pattern classes apart, saved as an attribution surrogate."""
    model = _trained(seed=0)
    path = tmp_path_factory.mktemp("surrogate") / "tiny.pt"
    save_classifier(model, path, extra={"class_names": CLASSES, "task": "attribution"})
    test_images, test_labels = pattern_set(16, 1)
    return path, model, test_images, test_labels


def _trained(seed: int):
    images, labels = pattern_set(48, seed)
    model = make_classifier("mcpherson2016", 3, SIZE, 3, seed=seed)
    # 10 epochs: at 6 the model of one thread (a neighbour took the other core) missed 4 of 48
    config = TrainConfig(epochs=10, batch_size=16, hflip=False, device="cpu", seed=seed)
    train_classifier(model, images, labels, config, progress=False)
    return model.eval()


def _accuracy(model, images, labels) -> float:
    return float((predict(model, images, device="cpu").argmax(1) == labels).mean())


# ----------------------------------------------------------------------------- known results
class Linear(nn.Module):
    """Logits = W x + b on the flattened input (the project's [-1, 1] scaling)."""

    def __init__(self, d: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(2, d, generator=g))
        self.b = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return x.flatten(1) @ self.w.t() + self.b


def test_linf_pgd_finds_the_closed_form_optimum_of_a_linear_model():
    # For two classes and label 0 the loss grows with (w1 - w0) . x: the optimum in the L-inf ball
    # (with the pixel box) is x + eps * sign(w1 - w0), clipped to [0, 255], from any start.
    model = Linear(3 * 8 * 8)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 3, 8, 8), dtype=np.uint8))
    x[0] = 0
    x[1] = 255  # the box binds on one side for these
    g = (model.w[1] - model.w[0]).detach().view(3, 8, 8)
    expected = (x.double() + 6 * torch.sign(g)).clamp(0, 255).to(torch.uint8)
    streams = np.arange(5, dtype=np.uint64) + 11
    out = A.pgd(model, x, eps=6, norm="linf", steps=10, labels=torch.zeros(5, dtype=torch.long), streams=streams)
    assert torch.equal(out, expected)


def test_l2_pgd_finds_the_closed_form_optimum_of_a_linear_model():
    # Away from the box the optimum is eps * g / ||g||; PGD from zero walks straight to it.
    model = Linear(3 * 8 * 8, seed=1)
    x = torch.full((3, 3, 8, 8), 128, dtype=torch.uint8)
    g = (model.w[1] - model.w[0]).detach().view(1, 3, 8, 8)
    optimum = 40.0 * g / g.norm()
    delta = A.pgd_delta(model, x, eps=40.0, norm="l2", steps=8, labels=torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(delta, optimum.expand_as(delta), atol=1e-4, rtol=0)
    # targeted toward class 1 is the same direction; toward class 0 the opposite one
    toward_0 = A.pgd_delta(model, x, eps=40.0, norm="l2", steps=8, target_class=0)
    torch.testing.assert_close(toward_0, -optimum.expand_as(delta), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- the exact bound
@pytest.mark.parametrize("norm, eps", [("linf", 1.0), ("linf", 2.5), ("linf", 8.0), ("l2", 1.0), ("l2", 7.3),
                                       ("l2", 150.0)])
def test_the_budget_holds_exactly_for_every_output_value(surrogate, norm, eps):
    path, _, images, _ = surrogate
    x = images.copy()
    x[:4] = 0  # the box: clipping at 0 and 255 must not break the bound either
    x[4:8] = 255
    ob = make(f"adv:eps={eps},norm={norm},steps=5,target=attribution,goal=real,model={path}")
    out = ob(torch.from_numpy(x), seed=3)
    diff = out.to(torch.float64) - torch.from_numpy(x).to(torch.float64)
    if norm == "linf":
        assert float(diff.abs().max()) <= math.floor(eps)
        assert float(diff.abs().max()) == math.floor(eps)  # the budget is used
    else:
        sq = (diff * diff).flatten(1).sum(1)
        assert bool((sq <= eps * eps).all()), float(sq.max())
        assert float(sq.max()) >= 0.8 * eps * eps  # and not thrown away by the rounding


def test_l2_quantize_keeps_the_bound_where_plain_rounding_breaks_it():
    # Every component at k + 0.5 - tiny, norm exactly eps: rounding to nearest would add up to
    # 0.5 per component and leave the ball; quantize must round some of them toward zero.
    rng = np.random.default_rng(0)
    d = torch.from_numpy(rng.integers(-3, 3, (6, 1, 10, 10)).astype(np.float64) + 0.49)
    eps = float(d.flatten(1).norm(dim=1).min())
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
    x = torch.full((6, 1, 10, 10), 100, dtype=torch.uint8)
    assert float(((torch.round(d)) ** 2).flatten(1).sum(1).max()) > eps * eps  # the trap is real
    out = A.quantize(x, d.float(), eps, "l2").to(torch.float64) - 100
    sq = (out * out).flatten(1).sum(1)
    assert bool((sq <= eps * eps).all())
    assert float(sq.min()) >= (eps - 3) ** 2


# ----------------------------------------------------------------------------- it works on its model
def test_pgd_lowers_the_surrogates_accuracy(surrogate):
    path, model, images, labels = surrogate
    clean = _accuracy(model, images, labels)
    assert clean >= 0.9
    out = make(f"adv:eps=12,steps=10,target=attribution,model={path}")(torch.from_numpy(images), seed=0)
    attacked = _accuracy(model, out.numpy(), labels)
    assert attacked <= 0.2, (clean, attacked)


def test_goal_real_launders_fakes_into_the_real_class(surrogate):
    path, model, images, labels = surrogate
    fake = labels != CLASSES.index("real")
    before = (predict(model, images[fake], device="cpu").argmax(1) == CLASSES.index("real")).mean()
    out = make(f"adv:eps=12,steps=10,target=attribution,goal=real,model={path}")(torch.from_numpy(images[fake]), seed=0)
    after = (predict(model, out.numpy(), device="cpu").argmax(1) == CLASSES.index("real")).mean()
    assert before <= 0.1 and after >= 0.9, (before, after)


def test_against_attacks_the_given_model_with_the_same_budget(surrogate):
    path, model, images, labels = surrogate
    other = _trained(seed=7)
    assert _accuracy(other, images, labels) >= 0.9
    ob = make(f"adv:eps=12,steps=10,target=attribution,model={path}")
    out = ob.against(other)(torch.from_numpy(images), seed=0, keys=list(range(len(images))))
    assert float((out.double() - torch.from_numpy(images).double()).abs().max()) <= 12
    assert _accuracy(other, out.numpy(), labels) <= 0.2


# ----------------------------------------------------------------------------- determinism and layouts
def test_seeded_deterministic_and_the_same_on_every_layout(surrogate):
    path, _, images, _ = surrogate
    ob = make(f"adv:eps=4,norm=l2,steps=3,target=attribution,model={path}")
    a = ob(torch.from_numpy(images), seed=1)
    A._OUTPUTS.clear()  # recompute rather than read the cache
    b = ob(torch.from_numpy(images), seed=1)
    c = ob(torch.from_numpy(images), seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    nhwc = ob(np.ascontiguousarray(images.transpose(0, 2, 3, 1)), seed=1)
    assert isinstance(nhwc, np.ndarray) and nhwc.shape == (len(images), SIZE, SIZE, 3)
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), a.numpy())
    keyed = ob(torch.from_numpy(images[:3]), seed=1, keys=["a", "b", "c"])
    assert torch.equal(keyed, ob(torch.from_numpy(images[:3]), seed=1, keys=["a", "b", "c"]))
    assert not torch.equal(keyed, a[:3])  # the start is keyed per image
    # an image gets the same perturbation whatever else is in its batch
    names = [f"img{i}" for i in range(len(images))]
    whole = ob(torch.from_numpy(images), seed=1, keys=names)
    assert torch.equal(whole[5:9], ob(torch.from_numpy(images[5:9]), seed=1, keys=names[5:9]))


def test_random_start_is_inside_the_ball():
    streams = np.arange(64, dtype=np.uint64) * 7 + 3
    linf = A.random_start(streams, (64, 3, 8, 8), 4.0, "linf", "cpu")
    assert float(linf.abs().max()) <= 4.0 and float(linf.abs().max()) > 3.9
    assert abs(float(linf.mean())) < 0.1  # centred
    l2 = A.random_start(streams, (64, 3, 8, 8), 10.0, "l2", "cpu")
    norms = l2.flatten(1).norm(dim=1)
    # uniform in a 192-dimensional ball: the radius is eps * U^(1/192), nearly always close to eps
    assert float(norms.max()) <= 10.0 + 1e-4 and float(norms.min()) > 9.0
    assert torch.equal(l2, A.random_start(streams, (64, 3, 8, 8), 10.0, "l2", "cpu"))


def test_pgd_runs_under_the_callers_no_grad_and_inference_mode(surrogate):
    # an evaluation loop or a web request may call the method with autograd switched off
    path, _, images, _ = surrogate
    ob = make(f"adv:eps=4,steps=3,target=attribution,model={path}")
    expected = ob(torch.from_numpy(images[:6]), seed=0)
    with torch.no_grad():
        assert torch.equal(ob(torch.from_numpy(images[:6]), seed=0), expected)
    with torch.inference_mode():
        assert torch.equal(ob(torch.from_numpy(images[:6]), seed=0), expected)
    with pytest.raises(ValueError, match="amp must be"):
        A.pgd(surrogate[1], torch.from_numpy(images[:1]), eps=4, amp="bf16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_stay_on_the_device_within_budget(surrogate):
    path, _, images, _ = surrogate
    ob = make(f"adv:eps=4,steps=3,target=attribution,model={path}")
    x = torch.from_numpy(images).cuda()
    out = ob(x, seed=0)
    assert out.device == x.device and out.dtype == torch.uint8
    assert int((out.int() - x.int()).abs().max()) <= 4


# ----------------------------------------------------------------------------- refusals and description
@pytest.mark.parametrize("params, fragment", [
    ("eps=0", "eps must be number >= 1"),
    ("eps=0.5", "eps must be number >= 1"),
    ("norm=l1", "linf | l2"),
    ("steps=0", "steps must be integer >= 1"),
    ("step=0", "step must be number > 0"),
    ("target=face", "reid | attribution"),
    ("goal=fake", "untargeted | real"),
    ("target=reid,goal=real", "goal=real .* needs target=attribution"),
    ("size=3", "unknown parameter 'size'"),
])
def test_bad_parameters_are_refused_with_what_is_allowed(surrogate, params, fragment):
    path = surrogate[0]
    with pytest.raises(ValueError, match=fragment):
        make(f"adv:{params},model={path}")


def test_bad_models_are_refused(surrogate, tmp_path):
    with pytest.raises(ValueError, match="model' is required"):
        make("adv")
    missing = make(f"adv:model={tmp_path / 'missing.pt'}")  # an experiment may name it before it is made
    with pytest.raises(ValueError, match="no such checkpoint"):
        missing(np.zeros((1, SIZE, SIZE, 3), np.uint8), seed=0)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        make(f"adv:target=attribution,model={junk}")(np.zeros((1, SIZE, SIZE, 3), np.uint8), seed=0)
    path = surrogate[0]
    with pytest.raises(ValueError, match=r"takes 16 x 16 images with 3 channel\(s\); got 8 x 8"):
        make(f"adv:target=attribution,model={path}")(np.zeros((1, 8, 8, 3), np.uint8), seed=0)
    with pytest.raises(ValueError, match="attribution classifier"):
        make(f"adv:target=reid,model={path}")(np.zeros((1, SIZE, SIZE, 3), np.uint8), seed=0)
    no_real = tmp_path / "ids.pt"
    save_classifier(make_classifier("yu2019", 3, SIZE, 3, seed=0, fmap_base=64, fmap_max=32), no_real,
                    extra={"class_names": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="class named 'real'"):
        make(f"adv:target=attribution,goal=real,model={no_real}")(np.zeros((1, SIZE, SIZE, 3), np.uint8), seed=0)


def test_describe_says_there_is_no_guarantee_and_names_the_surrogate(surrogate):
    path = surrogate[0]
    d = make(f"adv:eps=4,target=attribution,goal=real,model={path}").describe()
    assert d["privacy"] == "none" and d["epsilon"] is None
    assert d["guarantee"].startswith("NONE: no formal privacy guarantee")
    assert d["surrogate"]["arch"] == "mcpherson2016" and d["surrogate"]["class_names"] == CLASSES
    assert len(d["surrogate"]["sha256"]) == 64 and d["step_used"] == 1.0
    assert "toward the class 'real'" in d["attack"]


def test_paths_keep_their_case_and_odd_characters_are_refused(surrogate, tmp_path):
    upper = tmp_path / "Surrogate.PT"
    upper.write_bytes(surrogate[0].read_bytes())
    assert make(f"adv:target=attribution,model={upper}").params["model"] == str(upper)
    with pytest.raises(ValueError, match="without"):
        make("adv:model=a[1].pt")


# ----------------------------------------------------------------------------- adversarial training
def test_adv_train_options_are_checked():
    assert A.resolve_adv_train(None)["steps"] == 3
    assert A.resolve_adv_train({"eps": 2, "steps": 4})["step_used"] == 1.25
    with pytest.raises(ValueError, match="unknown option"):
        A.resolve_adv_train({"epsilon": 2})
    with pytest.raises(ValueError, match=r"adv_train.fraction=0 .* in \(0, 1\]"):
        A.resolve_adv_train({"fraction": 0})
    with pytest.raises(ValueError, match="adv_train.norm"):
        A.resolve_adv_train({"norm": "l1"})


def test_adversarial_training_transform_perturbs_a_seeded_share_within_budget(surrogate):
    _, model, images, labels = surrogate
    transform = A.AdversarialTraining({"eps": 4, "fraction": 0.5, "goal": "real"}, seed=0, real_index=2)
    batch, y, index = torch.from_numpy(images), torch.from_numpy(labels), torch.arange(len(images))
    out = transform(batch, y, index, 1, model)
    changed = (out != batch).flatten(1).any(1)
    assert not bool(changed[y == 2].any())  # goal=real leaves the real images alone
    assert 0 < int(changed.sum()) < int((y != 2).sum()) + 1
    assert int((out.int() - batch.int()).abs().max()) <= 4
    assert torch.equal(out, transform(batch, y, index, 1, model))  # seeded
    assert not torch.equal(out, transform(batch, y, index, 2, model))  # fresh per epoch


def test_adversarial_training_attacks_the_model_being_trained_and_leaves_it_alone(surrogate):
    # Immunization must perturb against the weights under training (not a fixed surrogate), from
    # the true labels, without writing gradients into them or changing their mode.
    _, _, images, labels = surrogate
    learner = _trained(seed=5).train()
    for p in learner.parameters():
        p.requires_grad_(True)
        p.grad = None  # the last training step left its gradients
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    transform = A.AdversarialTraining({"eps": 12, "steps": 10, "fraction": 1.0}, seed=0)
    batch, y = torch.from_numpy(images), torch.from_numpy(labels)
    out = transform(batch, y, torch.arange(len(images)), 1, learner)
    assert learner.training  # the caller's mode is kept (dropout, batch norm)
    assert all(p.grad is None for p in learner.parameters())
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in before.items())
    assert int((out.int() - batch.int()).abs().max()) <= 12
    assert _accuracy(learner.eval(), out.numpy(), labels) <= 0.2


# ----------------------------------------------------------------------------- the grids' surrogates
def test_reid_surrogate_and_the_white_box_figure_in_reid_rows(tmp_path):
    from privattrib.attacks.reid import identity_accuracy, run_reid_cell, split_identity_set, train_reid_surrogate
    from privattrib.data import synthetic_faces

    faces = synthetic_faces(n_identities=6, per_identity=10, size=16, seed=0)
    cfg = {"arch": "mcpherson2016", "epochs": 15, "batch_size": 16}
    with pytest.raises(ValueError, match="surrogate_seed must differ"):
        train_reid_surrogate(faces, tmp_path / "s.pt", seed=0, surrogate_seed=0, arch_cfg=cfg)
    path = train_reid_surrogate(faces, tmp_path / "s.pt", seed=0, surrogate_seed=1000, arch_cfg=cfg, device="cpu")
    s = A.load_surrogate(path)
    assert s.task == "reid" and s.num_classes == 6 and s.arch == "mcpherson2016"
    # the synthetic people differ by tens of grey levels: it takes eps 32 to fool a network on them
    row = run_reid_cell(faces, f"adv:eps=32,steps=10,model={path}", 0, cfg, tmp_path / "work",
                        variant="no-retrain", device="cpu")
    _, test = split_identity_set(faces, 8, 2, seed=0)
    clean = identity_accuracy(s.model, test.images, test.labels, device="cpu")
    assert clean >= 0.9 and row["accuracy_surrogate"] <= 0.2, (clean, row["accuracy_surrogate"])
    assert row["accuracy_surrogate_clean"] == pytest.approx(clean)
    assert row["surrogate"]["sha256"] == s.sha256
    assert "train_key_list" not in row["surrogate"]["split"] and row["surrogate"]["split"]["seed"] == 0
    assert row["method_describe"]["guarantee"].startswith("NONE")
    # PSNR of the perturbed test faces against their originals: changed, and within the budget's bound
    assert 0 < row["mse_obfuscated"] <= 32 ** 2 and row["psnr_obfuscated"] >= 10 * math.log10(255 ** 2 / 32 ** 2)
    plain = run_reid_cell(faces, "pixelate:b=4", 0, cfg, tmp_path / "work", variant="no-retrain", device="cpu")
    assert "accuracy_surrogate" not in plain
    # the surrogate of split 0 has seen most test faces of split 1: refused, not measured
    with pytest.raises(ValueError, match=r"trained on \d+ of the 12 test faces of this split .*seed 0"):
        run_reid_cell(faces, f"adv:eps=32,steps=10,model={path}", 1, cfg, tmp_path / "work", variant="no-retrain",
                      device="cpu")


def test_a_reid_surrogate_can_learn_the_other_people_first(tmp_path):
    from privattrib.attacks.reid import split_identity_set, train_reid_surrogate
    from privattrib.data import synthetic_faces

    faces = synthetic_faces(n_identities=8, per_identity=6, size=16, seed=0)
    cfg = {"arch": "mcpherson2016", "epochs": 2, "batch_size": 16}
    with pytest.raises(ValueError, match="at least 2 people outside the targets"):  # every person is a target
        train_reid_surrogate(faces, tmp_path / "all.pt", seed=0, surrogate_seed=1000, arch_cfg=cfg,
                             train_per_identity=4, test_per_identity=2, device="cpu", pretrain_others=True)
    path = train_reid_surrogate(faces, tmp_path / "s.pt", seed=0, surrogate_seed=1000, arch_cfg=cfg,
                                train_per_identity=4, test_per_identity=2, max_identities=5, device="cpu",
                                pretrain_others=True)
    s = A.load_surrogate(path)
    assert s.num_classes == 5  # the targets' classes: the last layer was replaced after pretraining
    assert s.split["pretrained_on_others"] == 3 * 6  # every photo of the three people left out
    train, test = split_identity_set(faces, 4, 2, seed=0, max_identities=5)
    assert set(s.split["train_key_list"]) == set(map(str, train.keys))
    assert not set(s.split["train_key_list"]) & set(map(str, test.keys))


def test_an_attribution_surrogate_must_not_share_a_grid_seed(tmp_path):
    from privattrib.experiments import validate_spec
    from privattrib.experiments.surrogate import train_surrogate

    (tmp_path / "fakes").mkdir()
    spec = validate_spec({
        "name": "t", "data": {"size": 16, "sources": {"real": {"synthetic": {}}, "fake": str(tmp_path / "fakes")},
                              "per_class": {"train": 4, "test": 2}},
        "classifier": {"arch": "yu2019"}, "obfuscations": ["none"], "seeds": [0, 1]})
    with pytest.raises(ValueError, match="one of the experiment's seeds"):
        train_surrogate(spec, tmp_path / "out", seed=1)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_grid_names_a_missing_surrogate_before_any_work(tmp_path):
    from privattrib.experiments import run_experiment, validate_spec

    (tmp_path / "fakes").mkdir()
    spec = validate_spec({
        "name": "t", "device": "cpu",
        "data": {"size": 16, "sources": {"real": {"synthetic": {}}, "fake": str(tmp_path / "fakes")},
                 "per_class": {"train": 4, "test": 2}},
        "classifier": {"arch": "yu2019"}, "scenarios": ["clean-train"],
        "obfuscations": ["none", f"adv:target=attribution,goal=real,model={tmp_path / 'later.pt'}"]})
    with pytest.raises(ValueError, match="later.pt: no such checkpoint"):
        run_experiment(spec, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "data").exists()


# ----------------------------------------------------------------------------- the one-pass generator
def test_the_generator_learns_to_fool_its_surrogate_within_the_exact_bound(surrogate, tmp_path):
    path, model, images, labels = surrogate
    train_images, _ = pattern_set(48, 3)
    gen_path = A.train_perturbation_generator(path, train_images, tmp_path / "gen.pt", eps=12, epochs=8,
                                              batch_size=16, lr=3e-3, device="cpu")
    ob = make(f"adv-gen:model={gen_path}")
    out = ob(torch.from_numpy(images), seed=0)
    assert int((out.int() - torch.from_numpy(images).int()).abs().max()) <= 12
    assert torch.equal(out, ob(torch.from_numpy(images), seed=1))  # one deterministic pass, no noise
    assert _accuracy(model, out.numpy(), labels) <= 0.5  # clean: >= 0.9 (test_pgd_lowers_...)
    assert ob.surrogate().sha256 == A.load_surrogate(path).sha256
    d = ob.describe()
    assert d["guarantee"].startswith("NONE") and d["eps"] == 12 and d["surrogate"]["arch"] == "mcpherson2016"
    with pytest.raises(ValueError, match="no such generator"):
        make(f"adv-gen:model={tmp_path / 'none.pt'}")(images[:1].transpose(0, 2, 3, 1).copy(), seed=0)
    with pytest.raises(ValueError, match="goal must be"):
        A.train_perturbation_generator(path, train_images, tmp_path / "g2.pt", goal="fake")


def test_generator_options_and_images_are_checked(surrogate, tmp_path):
    path = surrogate[0]
    images, _ = pattern_set(4, 3)
    for options, fragment in [({"epochs": 0}, "epochs must be an integer >= 1"),
                              ({"batch_size": 0}, "batch_size must be an integer >= 1"),
                              ({"lr": -1.0}, "lr must be a finite number > 0"),
                              ({"eps": 0.5}, "eps must be a number >= 1"),
                              ({"depth": 0}, "depth must be an integer >= 1")]:
        with pytest.raises(ValueError, match=fragment):
            A.train_perturbation_generator(path, images, tmp_path / "g.pt", **options)
    with pytest.raises(ValueError, match=r"takes N x 3 x 16 x 16 .* got 12 x 3 x 8 x 8"):
        A.train_perturbation_generator(path, images[:, :, :8, :8], tmp_path / "g.pt", epochs=1)
    assert not (tmp_path / "g.pt").exists()


def test_a_non_square_surrogate_takes_its_own_shape(tmp_path):
    # mcpherson2016 takes H x W (AT&T's 112 x 92 faces, Fan's setting): the surrogate knows its height
    model = make_classifier("mcpherson2016", 3, 12, 1, seed=0, height=16)
    path = save_classifier(model, tmp_path / "tall.pt", extra={"class_names": ["a", "b", "c"], "task": "reid"})
    assert A.load_surrogate(path).input_shape == (1, 16, 12)
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 1, 16, 12), dtype=np.uint8))
    out = make(f"adv:eps=3,steps=2,model={path}")(x, seed=0)
    assert out.shape == x.shape and int((out.int() - x.int()).abs().max()) == 3
    with pytest.raises(ValueError, match=r"takes 16 x 12 images with 1 channel\(s\); got 12 x 16"):
        make(f"adv:eps=3,steps=2,model={path}")(x.transpose(2, 3).contiguous(), seed=0)


def test_report_tables_name_a_surrogate_by_its_file():
    from privattrib.report.tables import short_spec

    assert short_spec("adv:eps=2,goal=real,model=runs/x/surrogates/yu2019-s100.pt") == \
        "adv:eps=2,goal=real,model=yu2019-s100.pt"
