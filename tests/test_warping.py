"""The warping error of Lai et al. (2018): near zero for outputs that move with a pan, large for flicker."""

import numpy as np
import pytest
from PIL import Image

from cin_style.inference.video import warping_error


@pytest.fixture(scope="module")
def pan(data_root):
    still = np.asarray(Image.open(data_root / "content" / "val" / "kodim23.jpg").convert("RGB").resize((384, 256)))
    return [still[40:200, 20 + 2 * t : 260 + 2 * t].copy() for t in range(6)]  # 2 px per frame


def test_an_identity_network_on_a_pure_pan_is_near_zero(pan):
    assert warping_error(pan, pan) < 2e-3


def test_independent_noise_is_far_larger(pan):
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 25, f.shape), 0, 255).astype(np.uint8) for f in pan]
    still_wrong = [pan[0]] * len(pan)  # an output that does not move with the camera
    identity = warping_error(pan, pan)
    assert warping_error(pan, noisy) > 20 * max(identity, 1e-4)
    assert warping_error(pan, still_wrong) > 20 * max(identity, 1e-4)


def test_frames_must_pair_up(pan):
    with pytest.raises(ValueError, match="same number"):
        warping_error(pan, pan[:-1])
