"""Where networks run unless told."""

from __future__ import annotations

import torch

__all__ = ["default_device"]


def default_device() -> torch.device:
    """Where models and the optimization run unless told: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
