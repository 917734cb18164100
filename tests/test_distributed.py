"""Distributed data parallel training through Lightning, for real: two CPU processes (gloo).

A two-process run with batch 2 per process must train the network that one process trains
with batch 4 from the same seed: the same photos, crops and styles in every step, and the
gradients averaged. Weights are compared through what the networks paint, because some
parameters (the beta of a norm whose output feeds another norm) have mathematically zero
gradients that Adam turns into +-lr steps from rounding noise, in either run.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style.io.paintings import load_center_crops
from cin_style.training.data import ContentImages, ShardedRandomSampler
from cin_style.io.images import find_images
from cin_style.network.transformer import StyleTransformer
from _nets import random_style_net

CLI = [str(Path(sys.executable).parent / "cin-style")]


def test_sharded_sampler_splits_the_one_process_batches_between_processes():
    one = list(ShardedRandomSampler(10, seed=3))
    ranks = [list(ShardedRandomSampler(10, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert sorted(i for i, _ in one) == list(range(10))
    for step in range(2):  # global batch 4 = 2 per process
        global_batch = one[4 * step : 4 * step + 4]
        local = ranks[0][2 * step : 2 * step + 2] + ranks[1][2 * step : 2 * step + 2]
        assert sorted(global_batch) == sorted(local), "same photos and same crop keys"
    later = ShardedRandomSampler(10, seed=3)
    later.set_epoch(1)
    assert [i for i, _ in later] != [i for i, _ in one], "each epoch has its own order"
    with pytest.raises(ValueError, match="rank"):
        ShardedRandomSampler(10, rank=2, world_size=2)


def _train(tmp_path: Path, name: str, data_root: Path, *extra: str) -> Path:
    run = tmp_path / name
    args = [
        "train", "experiment=smoke", f"data_root={data_root}", f"hydra.run.dir={run}",
        "data.image_size=64", "model.width=0.25", "trainer.max_steps=4", "trainer.val_check_interval=4",
        "checkpoint_every=4", "trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores
    done = subprocess.run([*CLI, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run / "checkpoints" / "last.ckpt"


def _paint(checkpoint: Path, photos: torch.Tensor) -> torch.Tensor:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    net = StyleTransformer(num_styles=2, width=0.25)
    net.load_state_dict({k.removeprefix("transformer."): v for k, v in state["state_dict"].items() if k.startswith("transformer.")})
    with torch.no_grad():
        return torch.cat([net.eval()(photos, torch.eye(2)[[s] * len(photos)]) for s in range(2)])


def test_two_gloo_processes_train_what_one_process_trains(tmp_path, data_root):
    one = _train(tmp_path, "one", data_root, "data.batch_size=4")
    ddp = _train(tmp_path, "ddp", data_root, "data.batch_size=2", "trainer=ddp", "trainer.devices=2")
    # The control: the same run with another photo order must differ far beyond the tolerance.
    other = _train(tmp_path, "other", data_root, "data.batch_size=4", "data.seed=1")
    assert "train_ddp_process_1.log" in os.listdir(ddp.parents[1]), "a second process joined the run"

    photos = load_center_crops(find_images(data_root / "content" / "val")[:4], 64)
    reference = _paint(one, photos)
    gap = (_paint(ddp, photos) - reference).abs()
    control = (_paint(other, photos) - reference).abs()
    # Measured: mean 0.0006, max 0.009 for DDP; mean 0.12 for the control.
    assert gap.mean() < 0.003 and gap.max() < 0.05
    assert control.mean() > 10 * 0.003

    # The gradients themselves, through Adam's first moment, for the convolutions.
    adam_one = torch.load(one, weights_only=True)["optimizer_states"][0]["state"]
    adam_ddp = torch.load(ddp, weights_only=True)["optimizer_states"][0]["state"]
    conv = [k for k, v in adam_one.items() if v["exp_avg"].dim() == 4]
    rel = [((adam_one[k]["exp_avg"] - adam_ddp[k]["exp_avg"]).norm() / adam_one[k]["exp_avg"].norm()).item() for k in conv]
    assert len(conv) == 16 and sorted(rel)[len(rel) // 2] < 0.02


def test_device_cache_cuts_the_crops_the_photo_loader_cuts(data_root):
    """The on-device path (uint8 photos on the GPU, crops there) gives exactly the CPU loader's crops,
    for landscape and portrait photos, flipped or not."""
    from cin_style.training.data import CropKeys, DevicePhotos

    files = find_images(data_root / "content" / "train")[:5]
    photos = ContentImages(files, image_size=48, train=True)
    real_photo = photos.photo
    photos.photo = lambda i: real_photo(i).transpose(Image.Transpose.ROTATE_90) if i % 2 else real_photo(i)  # portraits too
    cache = DevicePhotos(photos).to(torch.device("cpu"))
    assert cache.pixels.dtype == torch.uint8 and any(cache.transposed) and not all(cache.transposed)
    items = list(ShardedRandomSampler(len(files), seed=7)) + list(ShardedRandomSampler(len(files), seed=8))
    loader = torch.stack([photos[item] for item in items])
    device = cache.crops(torch.stack([CropKeys(cache)[item] for item in items]))
    assert device.shape == (10, 3, 48, 48)
    assert torch.equal(device, loader)


def test_stylizing_a_folder_on_two_processes_writes_what_one_process_writes(tmp_path, data_root):
    """`stylize --devices 2` goes through Lightning's predict loop with DDP (two gloo processes):
    every photo written once, the same pixels as the one-process path, failures reported by the first process."""
    from cin_style import StyleModel

    model = tmp_path / "tiny.safetensors"
    StyleModel(random_style_net(2), ["a", "b"], device="cpu").save(model)
    photos = tmp_path / "photos"
    photos.mkdir()
    for f in find_images(data_root / "content" / "val")[:5]:
        (photos / f.name).symlink_to(f)
    (photos / "broken.jpg").write_text("not an image")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["stylize", "-m", str(model), str(photos), "-s", "a=0.3,b=0.7", "--size", "96", "--device", "cpu"]
    runs = {}
    for name, extra in (("one", []), ("two", ["--devices", "2"])):
        done = subprocess.run([*CLI, *common, "-o", str(tmp_path / name), *extra], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 2, done.stderr[-3000:]  # the broken file
        assert done.stderr.count("broken.jpg") == 1, done.stderr
        runs[name] = done
    assert "wrote 5 of 6 images" in runs["two"].stdout and "on 2 devices" in runs["two"].stdout
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert one == sorted(p.name for p in (tmp_path / "two").iterdir()) and len(one) == 5
    for name in one:
        a = np.asarray(Image.open(tmp_path / "one" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "two" / name), dtype=np.int16)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2  # JPEG of (nearly) the same pixels


def test_training_on_device_photos_is_training_on_loaded_photos(tmp_path, compose_config, data_root):
    """data.on_device=true (the GPU experiment's input pipeline, here on the CPU) cuts the same
    crops in the same order, so two runs differ in nothing but where the crops are cut."""
    from cin_style.training.train import train

    weights = []
    for on_device in (False, True):
        cfg = compose_config("experiment=smoke", f"data_root={data_root}", "model.width=0.25", "trainer.max_steps=3",
                             "trainer.val_check_interval=3", "checkpoint_every=3", f"data.on_device={on_device}")  # fmt: skip
        summary = train(cfg, tmp_path / f"on_device_{on_device}")
        state = torch.load(summary["last_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
        weights.append({k: v for k, v in state.items() if k.startswith("transformer.")})
    loaded, on_device = weights
    assert loaded.keys() == on_device.keys()
    for key, value in loaded.items():
        assert torch.equal(value, on_device[key]), key
