"""The balanced multi-style objective (loss.balance=gatys): weights, the objective, the references."""

import json
import math

import pytest
import torch
from test_train import run_cli

from cin_style.losses.perceptual import LossConfig, PerceptualLoss, balance_weights
from cin_style.io.modelfile import read_model
from cin_style.training.module import StyleTransferModule
from cin_style.losses.optimize import optimize_images, reference_totals
from cin_style.network.styles import IDENTITY


def test_balance_weights_are_one_over_each_reference_and_the_mean_for_the_identity_row():
    weights = balance_weights(["a", "b", IDENTITY, "c"], {"a": 2.0, "b": 8.0, "c": 6.0}, unreferenced=[IDENTITY])
    assert torch.allclose(weights, torch.tensor([1 / 2.0, 1 / 8.0, 3 / 16.0, 1 / 6.0]), rtol=1e-6)  # the mean reference is 16/3
    with pytest.raises(ValueError, match="no balance reference for style.* b"):
        balance_weights(["a", "b"], {"a": 1.0})
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive and finite"):
            balance_weights(["a"], {"a": bad})
    with pytest.raises(ValueError, match="loss.balance must be one of none, gatys"):
        LossConfig(balance="median")


def test_the_balanced_objective_is_the_mean_of_each_samples_ratio_to_its_reference():
    torch.manual_seed(0)
    names = ["a", "b", IDENTITY]
    module = StyleTransferModule(style_names=names, width=0.25, loss={"vgg_weights": "random"})
    module.set_style_targets({"a": torch.rand(3, 32, 32), "b": torch.rand(3, 32, 32)})
    photos, drawn = torch.rand(4, 3, 24, 24), torch.tensor([0, 1, 1, 2])
    terms = module.score(photos, drawn)
    assert torch.allclose(module.objective(terms, drawn), terms.total.mean())  # unbalanced: the plain mean
    module.set_balance({"a": 4.0, "b": 0.5})
    by_hand = (terms.total[0] / 4.0 + terms.total[1] / 0.5 + terms.total[2] / 0.5 + terms.total[3] / 2.25) / 4
    assert torch.allclose(module.objective(terms, drawn), by_hand, rtol=1e-6)
    assert module.hparams["balance_reference"] == {"a": 4.0, "b": 0.5}  # what checkpoints keep


def test_a_reference_is_the_optimization_methods_mean_total_and_lies_below_the_photos_loss(vgg_state):
    torch.manual_seed(0)
    loss = PerceptualLoss(num_styles=1, config=LossConfig(style_layers={"relu1_2": 1.0, "relu2_2": 1.0}, content_layers={"relu2_2": 1.0}))
    photos, painting = torch.rand(2, 3, 32, 32), torch.rand(3, 48, 48)
    reference = reference_totals(photos, {"p": painting}, loss=loss, steps=3)
    grams = loss.style_grams(painting[None])
    again = optimize_images(photos, loss=loss, style_grams=grams, steps=3)
    assert reference["p"] == pytest.approx(float(again.terms.total.mean()), rel=1e-5)
    untouched = float(loss(photos, photos, style_grams=grams).total.mean())  # the photo itself: no style at all
    assert reference["p"] < 0.9 * untouched


def test_a_balanced_run_keeps_its_references_and_the_next_run_reuses_them(tmp_path, data_root, fast_overrides):
    common = ["train", "experiment=smoke", *fast_overrides, f"data_root={data_root}", "loss.balance=gatys", "loss.balance_steps=2", "loss.balance_size=32"]
    first = tmp_path / "first"
    done = run_cli(*common, f"hydra.run.dir={first}", "trainer.max_steps=2", cwd=tmp_path)
    assert "2 L-BFGS steps of Gatys et al. on 2 training photo(s) at 32 px, for 2 painting(s)" in done.stdout
    stored = json.loads((first / "balance.json").read_text())
    assert set(stored["reference"]) == {"great_wave", "starry_night"} and len(stored["photos"]) == 2
    assert not any("/content/val/" in p for p in stored["photos"])  # training photos, never the evaluation photos
    training = read_model(first / "model.safetensors").training
    assert training["balance_reference"] == pytest.approx(stored["reference"]) and training["balance_size"] == 32
    ckpt = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    module = StyleTransferModule(**{**ckpt["hyper_parameters"], "loss": {**ckpt["hyper_parameters"]["loss"], "vgg_weights": "random"}})
    expected = torch.tensor([1 / stored["reference"][n] for n in module.style_names])
    assert torch.allclose(module.balance, expected, rtol=1e-6)

    second = tmp_path / "second"
    done = run_cli(*common, f"hydra.run.dir={second}", "trainer.max_steps=1", f"init_model={first / 'model.safetensors'}", cwd=tmp_path)
    assert f"loss.balance=gatys: the references of {first / 'model.safetensors'}" in done.stdout
    assert "L-BFGS steps" not in done.stdout
    assert json.loads((second / "balance.json").read_text())["reference"] == pytest.approx(stored["reference"])
