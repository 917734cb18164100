"""Shared fixtures: the real config composed with fast CPU overrides, real data, real VGG weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hypothesis import settings

# Property tests draw the same examples on every run, so that CI is reproducible; run
# HYPOTHESIS_PROFILE=explore python -m pytest tests/test_properties.py to search further.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The notebook's "your own painting" section fits a new style; a few steps show that it runs.
os.environ.setdefault("CIN_STYLE_FIT_STEPS", "5")

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("CIN_STYLE_DATA", REPO.parent / "shared" / "data"))

# Fast CPU overrides on top of the real experiment configs.
FAST = [
    f"data_root={DATA_ROOT}",
    "data.image_size=64",
    "data.style_size=128",
    "data.batch_size=2",
    "data.num_val=2",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "styles").is_dir():
        pytest.fail(f"test images not found at {DATA_ROOT}; set CIN_STYLE_DATA to the shared data folder")
    return DATA_ROOT


@pytest.fixture(scope="session")
def fast_overrides() -> list[str]:
    return list(FAST)


@pytest.fixture(scope="session")
def compose_config():
    """compose_config(*overrides) -> DictConfig: the real `train` config with FAST overrides."""

    def _compose(*overrides: str, fast: bool = True):
        with initialize_config_module(config_module="cin_style.conf", version_base="1.3"):
            return compose(config_name="train", overrides=[*(FAST if fast else []), *overrides], return_hydra_config=False)

    return _compose


@pytest.fixture(scope="session")
def vgg_state() -> dict[str, torch.Tensor]:
    """The real VGG-16 weights, resolved exactly as training resolves them."""
    from cin_style.losses.vgg import resolve_vgg16_weights

    return resolve_vgg16_weights().state_dict
