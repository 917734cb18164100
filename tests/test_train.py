"""End-to-end training through the real command line, in subprocesses, with real VGG-16 weights."""

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from cin_style.network import fastconv
from cin_style.training.data import ContentImages
from cin_style.io.images import find_images
from cin_style.io.modelfile import read_model
from cin_style.training.module import StyleTransferModule
from cin_style.network.transformer import one_hot_styles

CLI = [str(Path(sys.executable).parent / "cin-style")]


def run_cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"cin-style {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@torch.no_grad()
def fixed_batch_loss(module: StyleTransferModule, batch: torch.Tensor) -> float:
    total = 0.0
    for s in range(module.num_styles):
        index = torch.full((batch.shape[0],), s)
        total += module.loss(module(batch, one_hot_styles(index, module.num_styles)), batch, index).total.mean().item()
    return total / module.num_styles


def test_smoke_experiment_trains_end_to_end(tmp_path, data_root):
    run = tmp_path / "run"
    done = run_cli("train", "experiment=smoke", f"data_root={data_root}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert "VGG-16 weights:" in done.stdout and "random" not in done.stdout.split("VGG-16 weights:")[1].splitlines()[0]
    assert "finished 80 steps" in done.stdout

    # A quiet first run: no warning, no tip, no line twice (progress-bar redraws aside).
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", done.stdout + done.stderr)  # progress bars' cursor moves
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line and "it/s" not in line and "s/it" not in line and "%|" not in line]
    assert not [line for line in lines if "warn" in line.lower() or "litlogger" in line], lines
    repeated = [line for line in set(lines) if lines.count(line) > 1]
    assert not repeated, repeated

    # Everything lands in the run folder.
    assert (run / "config.yaml").is_file() and "great_wave" in (run / "config.yaml").read_text()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run / "samples").glob("*.jpg")) == ["step_000040.jpg", "step_000080.jpg"]
    assert list((run / "logs").glob("events.out.tfevents.*")) or (run / "logs" / "metrics.csv").is_file()

    # The checkpoint rebuilds the network with its style names.
    trained = StyleTransferModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    assert trained.style_names == ["great_wave", "starry_night"]
    assert bool(trained.loss.targets_set)

    # The total loss on a fixed batch of held-out photos falls by at least 30% from the
    # untrained network (same configuration, same targets).
    torch.manual_seed(0)
    untrained = StyleTransferModule(**trained.hparams)
    untrained.loss.load_state_dict(trained.loss.state_dict())

    photos = ContentImages(find_images(data_root / "content" / "val")[4:8], image_size=128, train=False)
    batch = torch.stack([photos[i] for i in range(len(photos))])
    before, after = fixed_batch_loss(untrained.eval(), batch), fixed_batch_loss(trained.eval(), batch)
    print(f"fixed-batch total loss: untrained {before:.3f}, after 80 steps {after:.3f}")
    assert after <= 0.7 * before

    # The real checkpoint exports to a model file that stylizes bit-identically.
    run_cli("export", str(run / "checkpoints" / "last.ckpt"), "-o", str(tmp_path / "smoke.safetensors"), cwd=tmp_path)
    from cin_style import StyleModel

    exported = StyleModel.load(tmp_path / "smoke.safetensors", device="cpu", engine="torch")
    assert exported.styles == ["great_wave", "starry_night"] and exported.training["steps"] == 80
    w = torch.tensor([[0.25, 0.75]]).expand(batch.shape[0], 2)
    with torch.no_grad(), fastconv.direct():  # exact float32 on both sides
        assert torch.equal(exported.stylize_tensor(batch, w), trained.transformer(batch, w))


def test_resume_continues_at_the_right_step(tmp_path, data_root, fast_overrides):
    run = tmp_path / "run"
    common = ["train", "experiment=smoke", *fast_overrides, f"data_root={data_root}", f"hydra.run.dir={run}", "checkpoint_every=3",
              "optim.decay_steps=4", "optim.final_fraction=0.25"]
    run_cli(*common, "trainer.max_steps=3", cwd=tmp_path)
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["global_step"] == 3

    done = run_cli(*common, "trainer.max_steps=6", "ckpt_path=last", "progress_every=0", cwd=tmp_path)
    assert "Restoring states from the checkpoint" in done.stdout + done.stderr
    assert "finished 6 steps" in done.stdout
    # Output to a file or pipe gets progress lines (every step with progress_every=0), counted
    # from the resumed step; the bar's label has no "/-2" (the stock "Epoch 0/-2" of an endless run).
    lines = re.findall(r"^step (\d+)/6  loss [\d.]+  [\d.]+ images/s  elapsed \d+:\d\d:\d\d  left ~\d+:\d\d:\d\d$", done.stdout, re.M)
    assert lines == ["4", "5", "6"], done.stdout[-2000:]
    assert "/-2" not in done.stdout
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 6
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.ckpt")) == ["step_000006.ckpt"]
    # The optimizer state came along: Adam's step count is 6, not 3.
    adam_steps = {float(s["step"]) for s in resumed["optimizer_states"][0]["state"].values()}
    assert adam_steps == {6.0}
    # The learning-rate schedule came along too: a half cosine from 1 to 0.25 over 4 steps, so
    # 0.25 + 0.75 * (1 + cos(3 pi / 4)) / 2 = 0.35983 of the rate after step 3, 0.25 from step 4 on.
    for state, share in ((first, 0.35983), (resumed, 0.25)):
        for group in state["optimizer_states"][0]["param_groups"]:
            assert abs(group["lr"] / group["initial_lr"] - share) < 1e-4
    assert not any(k.startswith("loss.vgg.") for k in resumed["state_dict"]), "VGG-16 stays out of checkpoints"


def test_multirun_sweeps(tmp_path, data_root, fast_overrides):
    sweep = tmp_path / "sweep"
    run_cli(
        "train", "-m", "experiment=smoke", *fast_overrides, f"data_root={data_root}", "trainer.max_steps=1",
        "loss.style_weight=1,3", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    for job, weight in (("0", 1.0), ("1", 3.0)):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert float(OmegaConf.load(sweep / job / "config.yaml").loss.style_weight) == weight


def test_bad_override_is_a_clear_error(tmp_path, data_root):
    done = subprocess.run(
        [*CLI, "train", "experiment=no_such_experiment", f"data_root={data_root}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "no_such_experiment" in done.stderr and "Traceback" not in done.stderr


def test_every_run_writes_its_model_file_and_init_model_starts_the_next(tmp_path, data_root, fast_overrides):
    from safetensors.torch import load_file

    common = ["train", "experiment=smoke", *fast_overrides, f"data_root={data_root}"]
    first = tmp_path / "first"
    done = run_cli(*common, f"hydra.run.dir={first}", "trainer.max_steps=3", cwd=tmp_path)
    model = first / "model.safetensors"
    # The run folder holds the exported model, and the two commands that use it are printed.
    assert model.is_file()
    assert f"cin-style styles {model}" in done.stdout
    assert f"cin-style stylize -m {model} photo.jpg -s great_wave -o out.jpg" in done.stdout
    ckpt = torch.load(first / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    weights = load_file(model)
    for key, value in weights.items():
        assert torch.equal(value, ckpt["state_dict"][f"transformer.{key}"]), key

    # A second run starts from the file's weights with a fresh optimizer: with lr 0 its one step
    # changes nothing, and Adam has taken one step, not four.
    second = tmp_path / "second"
    done = run_cli(*common, f"hydra.run.dir={second}", "trainer.max_steps=1", "optim.lr=0", f"init_model={model}", cwd=tmp_path)
    assert f"initial weights from {model}: every convolution, and the rows of 2 of 2 style(s)" in done.stdout
    again = load_file(second / "model.safetensors")
    assert all(torch.equal(again[k], weights[k]) for k in weights)
    resumed = torch.load(second / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert {float(s["step"]) for s in resumed["optimizer_states"][0]["state"].values()} == {1.0}


def test_max_time_is_a_plain_key_that_stops_with_a_checkpoint(tmp_path, data_root, fast_overrides):
    run = tmp_path / "run"
    done = run_cli(
        "train", "experiment=smoke", *fast_overrides, f"data_root={data_root}", f"hydra.run.dir={run}",
        "trainer.max_steps=100000", "trainer.max_time=00:00:00:03", "checkpoint_every=100000", "trainer.precision=auto", cwd=tmp_path,
    )  # fmt: skip
    from cin_style.training.train import auto_precision

    assert f"trainer.precision=auto: {auto_precision('cpu')} on this machine" in done.stdout  # resolved before Lightning sees it
    steps = int(done.stdout.split("finished ")[1].split(" steps")[0])
    assert 1 <= steps < 100000 and "max_time" in done.stdout + done.stderr
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == steps and (run / "model.safetensors").is_file()


def test_precision_auto_is_bf16_only_where_the_hardware_multiplies_it(monkeypatch):
    from cin_style.network import fastconv
    from cin_style.training.train import auto_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(fastconv, "native_bf16", lambda native=native: native)
        assert auto_precision("cpu") == auto_precision("auto") == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert auto_precision("gpu") == "32-true"  # an old GPU: no bf16, whatever the CPU has


def test_init_model_copies_rows_by_style_name():
    from cin_style.network.transformer import StyleTransformer
    from cin_style.training.train import init_from

    torch.manual_seed(0)
    source = StyleTransformer(num_styles=2, width=0.25)
    for norm in source.norms():
        norm.gamma.data.normal_()
        norm.beta.data.normal_()
    target = StyleTransformer(num_styles=3, width=0.25)
    assert init_from(target, source, ["a", "b"], ["b", "new", "a"]) == 2
    for s_norm, t_norm in zip(source.norms(), target.norms()):
        assert torch.equal(t_norm.gamma[0], s_norm.gamma[1]) and torch.equal(t_norm.gamma[2], s_norm.gamma[0])
        assert torch.allclose(t_norm.beta[1], s_norm.beta.mean(0))
    assert torch.equal(target.encoder[0].conv.weight, source.encoder[0].conv.weight)
    # A wider run starts from the same function (StyleTransformer.widened); a narrower one is refused.
    wide = StyleTransformer(num_styles=2, width=0.5)
    assert init_from(wide, source, ["a", "b"], ["b", "a"]) == 2
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(wide(x, torch.tensor([[1.0, 0.0]])), source(x, torch.tensor([[0.0, 1.0]])), atol=1e-6)
    try:
        init_from(StyleTransformer(num_styles=2, width=0.125), source, ["a", "b"], ["a", "b"])
    except ValueError as err:
        assert "model.width" in str(err)
    else:
        raise AssertionError("a narrower network must be refused")


def test_identity_share_draws_the_identity_row_that_often_and_the_others_evenly():
    names = [f"style{i}" for i in range(4)] + ["identity"]
    module = StyleTransferModule(style_names=names, width=0.25, loss={"vgg_weights": "random"}, identity_share=0.4)
    counts = torch.zeros(len(names))
    for seed in range(500):  # each (seed, step) is one independent draw of the batch
        module.hparams.seed = seed
        counts += torch.bincount(module.draw_styles(8), minlength=len(names))
    share = counts / counts.sum()
    # 4,000 samples: the binomial standard error of a 0.4 share is 0.008, of a 0.15 share 0.006.
    assert abs(share[4] - 0.4) < 0.03
    assert torch.allclose(share[:4], torch.full((4,), 0.15), atol=0.025)
    for bad in ({"identity_share": 1.0}, {"identity_share": 0.2, "style_sampling": "cycle"}):
        try:
            StyleTransferModule(style_names=names, width=0.25, loss={"vgg_weights": "random"}, **bad)
        except ValueError as err:
            assert "identity_share" in str(err)
        else:
            raise AssertionError(f"{bad} must be refused")
    try:
        StyleTransferModule(style_names=names[:4], width=0.25, loss={"vgg_weights": "random"}, identity_share=0.2)
    except ValueError as err:
        assert "identity row" in str(err)
    else:
        raise AssertionError("identity_share without an identity row must be refused")


def test_a_run_that_ends_between_checkpoints_keeps_its_last_steps(tmp_path, data_root, fast_overrides):
    """A run stopped by trainer.max_time (here: max_steps) between two periodic checkpoints writes
    last.ckpt, and so its model file, at the step it ended on: nothing trained is lost."""
    run = tmp_path / "run"
    run_cli(
        "train", "experiment=smoke", *fast_overrides, "trainer.max_steps=3", "checkpoint_every=2", "trainer.val_check_interval=2",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3
    assert read_model(run / "model.safetensors").training["steps"] == 3
