from pathlib import Path

import pytest
from hydra.utils import instantiate

from cin_style.training.data import StyleTransferDataModule

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_experiments_found():
    assert {"smoke", "paintings", "single_style"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(compose_config, data_root, experiment):
    cfg = compose_config(f"experiment={experiment}", f"data_root={data_root}", fast=False)
    data = instantiate(cfg.data)
    assert isinstance(data, StyleTransferDataModule)
    assert cfg.name and cfg.trainer.max_steps > 0
    assert all(painting.path.is_file() for painting in data.paintings)


def test_smoke_is_small_and_real(compose_config, data_root):
    cfg = compose_config("experiment=smoke", f"data_root={data_root}", fast=False)
    assert cfg.trainer.max_steps < 100 and cfg.trainer.accelerator == "cpu"
    assert cfg.data.image_size == 128
    assert cfg.loss.vgg_weights is None, "smoke runs use the real VGG-16 weights"
    assert instantiate(cfg.data).style_names == ["great_wave", "starry_night"]


def test_paintings_uses_every_painting(compose_config, data_root):
    cfg = compose_config("experiment=paintings", f"data_root={data_root}", fast=False)
    data = instantiate(cfg.data)
    assert len(data.style_names) == len(list((data_root / "styles").glob("*.jpg")))
    assert (cfg.data.image_size, cfg.data.batch_size, cfg.trainer.max_steps) == (256, 16, 40_000)
    assert cfg.trainer.precision == "bf16-mixed"


def test_single_style_picked_by_override(compose_config, data_root):
    cfg = compose_config("experiment=single_style", "style=van_gogh_starry_night", f"data_root={data_root}", fast=False)
    data = instantiate(cfg.data)
    assert data.style_names == ["van_gogh_starry_night"]
    assert cfg.name == "single_style_van_gogh_starry_night"


def test_any_key_can_be_overridden(compose_config, data_root):
    cfg = compose_config("experiment=paintings", "trainer.max_steps=200", "data.batch_size=4", f"data_root={data_root}", fast=False)
    assert (cfg.trainer.max_steps, cfg.data.batch_size) == (200, 4)


def test_configs_ship_inside_the_package():
    from importlib.resources import files

    conf = files("cin_style.conf")
    assert conf.joinpath("train.yaml").is_file() and conf.joinpath("experiment", "smoke.yaml").is_file()


def test_the_loss_group_takes_its_defaults_and_types_from_LossConfig(compose_config):
    """One default per fact: the loss group is LossConfig's schema, the yaml restates no value,
    and a misspelt or mistyped key fails when the config is composed."""
    from dataclasses import asdict
    from importlib.resources import files

    import yaml
    from hydra.errors import ConfigCompositionException
    from omegaconf import OmegaConf

    from cin_style.losses.perceptual import LossConfig

    shown = OmegaConf.to_container(compose_config(fast=False).loss, resolve=True)
    assert shown == asdict(LossConfig())
    written = yaml.safe_load(files("cin_style.conf").joinpath("loss", "perceptual.yaml").read_text())
    assert written == {"defaults": ["perceptual_schema", "_self_"]}
    assert compose_config("loss.style_weight=7", fast=False).loss.style_weight == 7.0
    for bad in ("loss.stlye_weight=7", "loss.style_weight=heavy"):
        with pytest.raises(ConfigCompositionException):
            compose_config(bad, fast=False)
