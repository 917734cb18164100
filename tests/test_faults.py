"""Training faults, for real: SIGKILL and resume, Ctrl-C and SIGTERM, a non-finite loss, a kill during a write."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cin_style.training.train import train

CLI = [str(Path(sys.executable).parent / "cin-style")]


def _steps_in(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.ckpt"))


def test_sigkill_mid_epoch_then_resume_finishes_at_the_intended_step(tmp_path, data_root, fast_overrides):
    run = tmp_path / "run"
    target = 60  # an epoch is 23 batches of 2 photos: the kill lands mid-epoch
    args = [
        "train", "experiment=smoke", *fast_overrides, f"data_root={data_root}", f"hydra.run.dir={run}",
        "checkpoint_every=3", "trainer.val_check_interval=20", f"trainer.max_steps={target}",
    ]  # fmt: skip
    proc = subprocess.Popen([*CLI, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not any(s >= 6 for s in _steps_in(run / "checkpoints")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The kill may land between writing step_000006.ckpt and last.ckpt: last.ckpt is then step 3.
    killed_at = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert 3 <= killed_at < target and killed_at % 23 != 0

    done = subprocess.run([*CLI, *args, "ckpt_path=last"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Restoring states from the checkpoint" in done.stdout + done.stderr
    assert f"finished {target} steps" in done.stdout
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["global_step"] == target
    adam_steps = {float(s["step"]) for s in final["optimizer_states"][0]["state"].values()}
    assert adam_steps == {float(target)}, "the optimizer resumed too, not only the weights"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_after_the_step_and_keeps_it(tmp_path, data_root, fast_overrides, signum):
    """A run stopped by hand ends as max_time ends it: last.ckpt and model.safetensors at the step
    it stopped on, exit code 0, though no periodic checkpoint was due."""
    run = tmp_path / "run"
    args = [
        "train", "experiment=smoke", *fast_overrides, f"data_root={data_root}", f"hydra.run.dir={run}",
        "checkpoint_every=100000", "trainer.val_check_interval=2", "trainer.max_steps=100000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:  # files: a full pipe cannot stall the run
        proc = subprocess.Popen([*CLI, *args], cwd=tmp_path, stdout=out, stderr=err, text=True, env=env)
        deadline = time.monotonic() + 300
        try:
            while not list((run / "samples").glob("step_*.jpg")):  # a validation at step 2: training is under way
                assert proc.poll() is None, "the run ended before it could be stopped"
                assert time.monotonic() < deadline, "no training step within 5 minutes"
                time.sleep(0.05)
            proc.send_signal(signum)
            proc.wait(timeout=120)
        finally:
            proc.kill()
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert proc.returncode == 0, err[-2000:]
    steps = int(out.split("finished ")[1].split(" steps")[0])
    assert f"finished {steps} steps (stopped by {signal.Signals(signum).name})" in out
    assert 2 <= steps < 100000
    assert not list((run / "checkpoints").glob("step_*.ckpt")), "no periodic checkpoint was due"
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == steps
    from cin_style.io.modelfile import read_model

    assert read_model(run / "model.safetensors").training["steps"] == steps


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, compose_config, data_root, monkeypatch):
    from cin_style.training.module import StyleTransferModule

    real_step = StyleTransferModule.training_step

    def poisoned(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * float("nan") if self.global_step >= 5 else loss  # the 6th step

    monkeypatch.setattr(StyleTransferModule, "training_step", poisoned)
    cfg = compose_config("experiment=smoke", f"data_root={data_root}", "checkpoint_every=2", "trainer.max_steps=20", "trainer.val_check_interval=20")
    with pytest.raises(FloatingPointError, match="loss became nan at step 6"):
        train(cfg, tmp_path / "run")
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_non_finite_loss_from_the_command_line_is_one_line(tmp_path, data_root, fast_overrides):
    # A style weight of 1e38 overflows float32 at the first step.
    done = subprocess.run(
        [*CLI, "train", "experiment=smoke", *fast_overrides, f"data_root={data_root}", f"hydra.run.dir={tmp_path / 'run'}", "loss.style_weight=1e38"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "error: the training loss became inf at step 1" in done.stderr and "Traceback" not in done.stderr


WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from cin_style.network.transformer import StyleTransformer
    from cin_style.io.modelfile import write_model
    from cin_style.training.train import AtomicCheckpointIO

    kind, path = sys.argv[1], sys.argv[2]
    net = StyleTransformer(num_styles=2, width=0.125)

    def slow(real):
        def write(obj, target, *args, **kwargs):
            real(obj, target, *args, **kwargs)          # the whole file, then ...
            with open(target, "r+b") as f:              # ... half of it again, and hang
                f.truncate(f.seek(0, 2) // 2)
            print("writing", flush=True)
            time.sleep(120)
        return write

    if kind == "checkpoint":
        torch.save = slow(torch.save)
        AtomicCheckpointIO().save_checkpoint({"global_step": 2, "state_dict": net.state_dict()}, path)
    else:
        import safetensors.torch
        safetensors.torch.save_file = slow(safetensors.torch.save_file)
        write_model(path, net, ["x", "y"])
    """
)


@pytest.mark.parametrize("kind", ["checkpoint", "model"])
def test_a_kill_during_a_write_leaves_the_previous_file_intact(tmp_path, kind):
    from cin_style.network.transformer import StyleTransformer
    from cin_style.io.modelfile import read_model, write_model
    from cin_style.training.train import AtomicCheckpointIO

    path = tmp_path / ("last.ckpt" if kind == "checkpoint" else "model.safetensors")
    if kind == "checkpoint":
        AtomicCheckpointIO().save_checkpoint({"global_step": 1}, path)
    else:
        write_model(path, StyleTransformer(num_styles=3, width=0.125), ["a", "b", "c"])
    before = path.read_bytes()
    (tmp_path / "writer.py").write_text(WRITER)
    proc = subprocess.Popen([sys.executable, tmp_path / "writer.py", kind, path], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert path.read_bytes() == before
    if kind == "checkpoint":
        assert torch.load(path, weights_only=True)["global_step"] == 1
    else:
        assert read_model(path).styles == ["a", "b", "c"]
