# Installed as the package `cin_style.conf` (see pyproject.toml), so that Hydra finds the
# configs through `pkg://cin_style.conf` from a wheel as well as from a checkout.

# The loss group's fields and defaults are cin_style.losses.perceptual.LossConfig's, written there
# once: conf/loss/perceptual.yaml takes them from this schema (Hydra's structured configs), and
# a misspelt or mistyped loss key is an error when the config is composed.
from hydra.core.config_store import ConfigStore

from cin_style.losses.perceptual import LossConfig

ConfigStore.instance().store(group="loss", name="perceptual_schema", node=LossConfig)
