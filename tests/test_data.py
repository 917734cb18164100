import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cin_style.training.data import ContentImages, StyleTransferDataModule, load_paintings
from cin_style.io.images import find_images, load_image


def test_content_crops_flips_and_fixed_validation(data_root):
    data = StyleTransferDataModule(
        content_dir=str(data_root / "content" / "train"),
        val_dir=str(data_root / "content" / "val"),
        style_dir=str(data_root / "styles"),
        image_size=48,
        batch_size=3,
        num_val=2,
    )
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (3, 3, 48, 48) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1
    val1, val2 = next(iter(data.val_dataloader())), next(iter(data.val_dataloader()))
    assert val1.shape == (2, 3, 48, 48) and torch.equal(val1, val2)
    assert [p.name for p in data.val_set.files] == ["kodim01.jpg", "kodim02.jpg"]


def test_broken_files_are_skipped_with_a_warning(data_root, tmp_path):
    good = find_images(data_root / "content" / "train")[:3]
    for p in good:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "notes.jpg").write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0].read_bytes()[:2000])
    data = StyleTransferDataModule(content_dir=str(tmp_path), styles=[{"path": str(data_root / "styles" / "durer_lion.jpg")}], image_size=32, batch_size=2)
    with pytest.warns(UserWarning, match="notes.jpg"):
        data.setup()
    assert len(data.train_set) == 4  # the header-readable truncated file is caught when decoded
    with pytest.warns(UserWarning, match="truncated.jpg"):
        items = [data.train_set[i] for i in range(len(data.train_set))]
    assert all(item.shape == (3, 32, 32) for item in items)


def test_load_paintings(data_root):
    lion = data_root / "styles" / "durer_lion.jpg"
    specs = load_paintings([{"name": "lion", "path": str(lion), "multiplier": 2}, {"path": str(lion)}])
    assert [(s.name, s.multiplier) for s in specs] == [("lion", 2.0), ("durer_lion", 1.0)]
    with pytest.raises(ValueError, match="unknown key.*weight"):
        load_paintings([{"path": str(lion), "weight": 2}])
    with pytest.raises(ValueError, match="duplicate"):
        load_paintings([{"path": str(lion)}, {"path": str(lion)}])
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_paintings([{"path": str(data_root / "missing.jpg")}])
    with pytest.raises(ValueError, match="no styles"):
        load_paintings(None, None)
    assert load_paintings([], None) == []  # said explicitly: an identity row alone, for example


def test_style_images_loaded_at_style_size(data_root):
    data = StyleTransferDataModule(content_dir=str(data_root / "content" / "train"), style_dir=str(data_root / "styles"), style_size=100)
    images = data.load_style_images()
    assert len(images) == len(data.style_names) == 20
    assert all(min(im.shape[1:]) == 100 for im in images)


def test_empty_content_is_an_error():
    with pytest.raises(ValueError):
        ContentImages([], image_size=16, train=True)


def _textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A painting-like picture: noise with strokes, nowhere flat."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 220, size=(height, width, 3)).astype(np.uint8)


def test_trim_frame_removes_a_frame_and_keeps_skies_and_margins():
    from cin_style.io.paintings import trim_frame

    picture = _textured(240, 200)
    framed = np.zeros((200 + 14, 240 + 11, 3), np.uint8)  # black frame: 6 px top, 8 bottom, 5 left, 6 right
    framed[6:206, 5:245] = picture
    trimmed = trim_frame(Image.fromarray(framed))
    # The flat band and the first line after it (the step, which JPEG blurs with the frame) go.
    assert trimmed.size == (251 - 6 - 7, 214 - 7 - 9)
    assert np.array_equal(np.asarray(trimmed), picture[1:-1, 1:-1])

    # A sky that fades into the picture is part of it: a flat dark top band whose next lines
    # change slowly, not in a step.
    sky = _textured(120, 200)
    sky[:20] = np.linspace(20, 60, 20).astype(np.uint8)[:, None, None]
    assert trim_frame(Image.fromarray(sky)).size == (120, 200)
    # A flat band deeper than 5 % of the side (a paper margin) stays, and so does a flat image.
    margin = _textured(120, 100)
    margin[:, :10] = 240
    assert trim_frame(Image.fromarray(margin)).size == (120, 100)
    assert trim_frame(Image.new("RGB", (50, 40), (200, 10, 10))).size == (50, 40)


def test_trim_frame_removes_a_thin_edge_and_keeps_what_the_picture_does():
    """The second rule: up to 5 outer lines far (30+ levels) from the agreeing lines inside them.
    The edges here are textured, not flat, so the flat-band rule alone does not take them."""
    from cin_style.io.paintings import trim_frame

    rng = np.random.default_rng(3)
    picture = rng.integers(20, 60, size=(160, 200, 3)).astype(np.uint8)  # line means ~40
    edged = picture.copy()
    edged[:3] = rng.integers(190, 250, size=(3, 200, 3))  # a light print edge, 3 rows (~220)
    edged[3] = rng.integers(110, 150, size=(200, 3))  # JPEG's blur between edge and picture (~130)
    edged[:, -2:] = rng.integers(130, 170, size=(160, 2, 3))  # a 2 px mat rim on the right (~150)
    assert trim_frame(Image.fromarray(edged), edge_lines=0).size == (200, 160)  # not flat bands
    trimmed = trim_frame(Image.fromarray(edged))
    assert trimmed.size == (200 - 2, 160 - 4)
    assert np.array_equal(np.asarray(trimmed), picture[4:, :-2])

    # For this rule (tolerance=0 turns the flat-band rule off), an edge 6 lines deep is part of
    # the picture (a horizon, a wall), and so is a step whose inside does not settle (a gradient
    # running on from the side) or one under 30 levels.
    deep = picture.copy()
    deep[:6] = 220
    assert trim_frame(Image.fromarray(deep), tolerance=0).size == (200, 160)
    gradient = picture.copy()
    gradient[:12] = np.linspace(250, 40, 12).astype(np.uint8)[:, None, None]
    assert trim_frame(Image.fromarray(gradient), tolerance=0).size == (200, 160)
    faint = picture.copy()
    faint[:2] += 25
    assert trim_frame(Image.fromarray(faint)).size == (200, 160)


def test_paintings_are_loaded_without_their_frame(data_root):
    """Starry Night's file carries a black frame 6-8 px deep (the outer 5 px average 0.4 of 255):
    its style targets are taken from the painting inside it, for training and evaluation alike."""
    from cin_style.io.paintings import load_style_image, trim_frame

    path = data_root / "styles" / "van_gogh_starry_night.jpg"
    # The frame (9-10 px each side), then 5 more rows of unpainted canvas along the top and
    # one along the bottom (the thin-edge rule).
    assert trim_frame(load_image(path), edge_lines=0).size == (752 - 9 - 10, 600 - 10 - 10)
    assert trim_frame(load_image(path)).size == (733, 580 - 5 - 1)
    image = load_style_image(path, 256)
    assert image.shape == (3, 256, round(733 * 256 / 574))
    # Benzaiten's light print edge along the top (rows ~220 over a sky of ~35) and the
    # Librarian's mat rim (top 3, left 2, right 2) go as well.
    benzaiten = load_image(data_root / "styles" / "hiroshige_benzaiten_shrine_in_snow.jpg")
    assert benzaiten.size == (699, 450) and trim_frame(benzaiten).size == (692, 450 - 3 - 4)
    librarian = load_image(data_root / "styles" / "arcimboldo_the_librarian.jpg")
    assert trim_frame(librarian).size == (304 - 4, 420 - 3)
    border = torch.cat([image[:, :2].flatten(1), image[:, -2:].flatten(1), image[:, :, :2].flatten(1), image[:, :, -2:].flatten(1)], 1)
    assert border.mean() > 0.15  # the frame's black is gone (it averaged 0.002)
