"""The ``cin-style`` command line.

``cin-style train [HYDRA OVERRIDES...]`` composes the config in ``cin_style.conf`` (the
repository's ``conf/`` folder) with Hydra, so every key can be overridden and ``-m`` runs
sweeps. The other commands use trained networks. The command line parses arguments and
calls the library; errors the user can fix are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

# Before PyTorch is imported (it reads this once): back large CPU tensors with transparent huge
# pages. Every layer of a big image allocates fresh tensors of hundreds of MB, and without huge
# pages the kernel faults and zeroes them 4 KB at a time: 1.2 million faults per 1024x1024
# forward pass on CPU, a third of its time. Set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

USAGE = """usage: cin-style COMMAND [ARGS...]

commands:
  train     train one network on N styles (Hydra overrides, e.g. experiment=smoke)
  export    turn a training checkpoint into a standalone .safetensors model file
  styles    list a model's styles
  stylize   stylize photos or folders with a style or a blend of styles
  blend     the CIN paper's interpolation grid between 2, 3 or 4 styles
  video     stylize a video file
  optimize  the optimization method of Gatys et al. (the quality reference), one image
  evaluate  a model's content and style losses on held-out photos, optionally against optimize

examples:
  cin-style train experiment=smoke
  cin-style train experiment=paintings trainer.max_steps=200 data.batch_size=4
  cin-style export outputs/smoke/.../checkpoints/last.ckpt -o smoke.safetensors
  cin-style stylize -m smoke.safetensors photo.jpg -s "great_wave=0.7,starry_night=0.3" -o out.jpg
  cin-style stylize -m smoke.safetensors photo.jpg -s starry_night --mask great_wave=sky.png --feather 16 -o out.jpg
  cin-style stylize -m smoke.safetensors photo.jpg -s starry_night --preserve-color -o out.jpg
  cin-style train experiment=add_styles base_model=smoke.safetensors 'new_styles=[identity]'
  cin-style optimize --content photo.jpg --style painting.jpg -o out.png
  cin-style evaluate -m smoke.safetensors --content photos/ --style-images paintings/ --json eval.json

Run 'cin-style COMMAND --help' for a command's options.
"""

CONFIG_PACKAGE = "cin_style.conf"
EXIT_USAGE = 2
MAX_BLEND_STEPS = 33  # a 33x33 grid is already 1,089 images


class CommandError(Exception):
    """A problem to report in one line, without a traceback."""


def _train(argv: list[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=f"pkg://{CONFIG_PACKAGE}", config_name="train", version_base="1.3")
    def main(cfg: DictConfig) -> None:
        from hydra.errors import InstantiationException

        from .modelfile import ModelFileError
        from .train import TrainingConfigError, train
        from .vgg import VGGWeightsError

        try:
            train(cfg, HydraConfig.get().runtime.output_dir)
        except (FloatingPointError, VGGWeightsError, InstantiationException, FileNotFoundError, ModelFileError, TrainingConfigError) as err:
            # Problems the user can act on: one line, not Hydra's traceback. SystemExit passes through Hydra.
            print(f"cin-style train: error: {err}", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    # Hydra reads its overrides from sys.argv; argv[0] is also what Lightning's DDP launcher
    # re-runs to start the other processes (see _train_main.py).
    sys.argv = [str(Path(__file__).with_name("_train_main.py")), *argv]
    main()
    return 0


def _load_model(args):
    from .api import StyleModel

    if args.model is None:
        return StyleModel.pretrained(device=args.device)
    return StyleModel.load(args.model, device=args.device)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other error of the command line."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tile(text: str) -> int | None:
    """--tile auto|off|N -> None (decide), 0 (never) or a tile side."""
    if text == "auto":
        return None
    if text in ("off", "0"):
        return 0
    from .tiling import MIN_TILE

    value = _positive(text)
    if value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"a tile must be at least {MIN_TILE} pixels, got {value}")
    return value


def _export(args) -> int:
    from .modelfile import credits_from_manifest, read_model, write_model

    loaded = read_model(args.checkpoint)
    credits = credits_from_manifest(args.credits, loaded.styles, loaded.training) if args.credits else loaded.credits
    out = write_model(args.output, loaded.transformer, loaded.styles, training=loaded.training, credits=credits, half=args.half)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(loaded.styles)} styles)")
    return 0


def _styles(args) -> int:
    from .api import pretrained_file
    from .modelfile import read_model

    loaded = read_model(args.model if args.model else pretrained_file())
    credits = {c.get("style"): c for c in loaded.credits or []}
    for name in loaded.styles:
        c = credits.get(name)
        if c and not args.names_only and not c.get("artist"):  # the identity row: no painting behind it
            print(f"{name}\t{c.get('title', '')}")
        elif c and not args.names_only:
            year = f", {c['year']}" if c.get("year") and c.get("year") != "unknown" else ""
            licence = (c.get("license") or "licence not recorded").split(";")[0]  # the full text stays in the model file
            print(f"{name}\t{c.get('title', '?')} ({c.get('artist', '?')}{year}); {licence}")
        else:
            print(name)
    return 0


def _unit(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _percent(text: str) -> int:
    value = _positive(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be between 1 and 100, got {value}")
    return value


def _check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove that a file can be written there, before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CommandError(f"cannot write to {folder}: {err.strerror or err}") from None


def _check_output(path: Path, *, folder: bool) -> None:
    from .images import OUTPUT_FORMATS

    if folder:
        if path.suffix.lower() in OUTPUT_FORMATS:
            raise CommandError(f"{path}: several outputs need a folder, not an image file name")
        if path.exists() and not path.is_dir():
            raise CommandError(f"{path}: exists and is not a folder")
        _check_writable(path)
        return
    if path.is_dir():
        raise CommandError(f"{path}: is a folder; give an image file name")
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise CommandError(f"{path}: the output's suffix must name an image format ({', '.join(sorted(OUTPUT_FORMATS))})")
    _check_writable(path.parent)


def _collect_inputs(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(input file, output path relative to the output folder) for every image."""
    from .images import find_images

    pairs = []
    for item in inputs:
        if item.is_dir():
            pairs += [(f, f.relative_to(item)) for f in find_images(item)]
        elif item.exists():
            pairs.append((item, Path(item.name)))
        else:
            raise CommandError(f"{item}: no such file or folder")
    return pairs


def _pairs(items: list[str] | None, what: str) -> list[tuple[str, str]]:
    """['a=b', ...] -> [('a', 'b'), ...] for --mask STYLE=FILE and --label VALUE=STYLE."""
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CommandError(f"{what} takes KEY=VALUE, got {item!r}")
        out.append((key.strip(), value.strip()))
    return out


def _masks(args) -> dict | None:
    """The --mask / --labels options as a {style: mask} mapping (files are checked, not yet read)."""
    from .masks import label_masks

    masks: dict = {}
    for style, file in _pairs(args.mask, "--mask"):
        if not Path(file).is_file():
            raise CommandError(f"--mask {style}={file}: no such file")
        masks[style] = file
    if args.labels:
        if not Path(args.labels).is_file():
            raise CommandError(f"--labels {args.labels}: no such file")
        mapping = {}
        for value, style in _pairs(args.label, "--label"):
            if not value.isdigit():
                raise CommandError(f"--label {value}={style}: the label must be a whole number (a gray level or palette index)")
            mapping[int(value)] = style
        if not mapping:
            raise CommandError("--labels needs --label VALUE=STYLE for each label that gets a style")
        masks.update(label_masks(args.labels, mapping))
    elif args.label:
        raise CommandError("--label needs --labels FILE")
    return masks or None


def _stylize_on_devices(args, model, pairs: list[tuple[Path, Path]], output: Path, look: dict) -> int:
    """Folder mode on several devices: Lightning's predict loop with the DDP strategy."""
    from .predict import stylize_files

    if args.all_styles:
        raise CommandError("--all-styles runs on one device; drop --devices")
    accelerator = "cpu" if args.device == "cpu" else "auto"
    options = {**look, "size": args.size, "tile": args.tile}
    writer = stylize_files(
        model, [src for src, _ in pairs], [output / rel for _, rel in pairs], style=args.style, options=options,
        devices=args.devices, accelerator=accelerator, quality=args.quality, max_pixels=args.max_pixels,
    )  # fmt: skip
    if not writer.is_global_zero:
        return 0  # the first process reports for all
    print(f"wrote {len(writer.written)} of {len(pairs)} images to {output} on {args.devices} devices")
    if writer.failures:
        print(f"{len(writer.failures)} failed:", file=sys.stderr)
        for index in sorted(writer.failures):
            print(f"  {writer.failures[index]}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _stylize(args) -> int:
    from tqdm.auto import tqdm

    from .images import ImageLoadError, failure_line, load_image, save_image

    masks = _masks(args)
    if args.demo:
        from .api import demo_photo_path

        if args.inputs:
            raise CommandError("--demo stylizes the bundled photo; give either --demo or input files")
        args.inputs = [str(demo_photo_path())]
        args.all_styles = args.all_styles or (args.style is None and masks is None)
    elif not args.inputs:
        raise CommandError("give one or more photos or folders to stylize (or --demo)")
    if not args.all_styles and args.style is None and masks is None:
        raise CommandError("give a style with -s/--style NAME or a blend like -s 'a=0.7,b=0.3', masks with --mask STYLE=FILE, or --all-styles")
    output = Path(args.output)
    pairs = _collect_inputs([Path(p) for p in args.inputs])
    # Several inputs, a folder, or an existing folder as the output (like cp) mean folder mode.
    folder_mode = len(pairs) != 1 or any(Path(p).is_dir() for p in args.inputs) or output.is_dir()
    _check_output(output, folder=folder_mode)
    model = _load_model(args)
    look = {"strength": args.strength, "masks": masks, "feather": args.feather, "preserve_color": args.preserve_color}
    if not args.all_styles:  # a bad style, mask style or strength is reported before any image is read
        model.check_style(args.style, strength=args.strength, masks=masks)

    def one(src: Path, dst: Path) -> None:
        photo = load_image(src, max_pixels=args.max_pixels)
        if args.all_styles:
            image = model.style_sheet(photo, size=args.size)
        else:
            image = model.stylize(photo, style=args.style, **look, size=args.size, tile=args.tile, progress=not folder_mode)
        save_image(image, dst, quality=args.quality)

    if not folder_mode:
        src, _ = pairs[0]
        one(src, output)
        print(f"wrote {output}")
        return 0

    if args.devices != 1:
        return _stylize_on_devices(args, model, pairs, output, look)
    failures: list[str] = []
    for src, rel in tqdm(pairs, unit="image", desc="stylize"):
        try:
            one(src, output / rel)
        except (ImageLoadError, OSError, ValueError) as err:
            failures.append(failure_line(src, str(err)))
    print(f"wrote {len(pairs) - len(failures)} of {len(pairs)} images to {output}")
    if failures:
        print(f"{len(failures)} failed:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _blend(args) -> int:
    from .images import load_image, save_image

    names = [s.strip() for s in args.style.split(",") if s.strip()]
    if not 2 <= len(names) <= 4:
        raise CommandError(f"blend takes 2, 3 or 4 styles separated by commas, got {len(names)}")
    if args.steps < 2 or args.steps > MAX_BLEND_STEPS:
        raise CommandError(f"--steps must be between 2 and {MAX_BLEND_STEPS}, got {args.steps}")
    _check_output(Path(args.output), folder=False)
    model = _load_model(args)
    for name in names:
        model.weights(name)  # a bad style is reported before the photo is read
    grid = model.blend_grid(load_image(args.input, max_pixels=args.max_pixels), names, steps=args.steps, size=args.size)
    save_image(grid, args.output, quality=args.quality)
    print(f"wrote {args.output}")
    return 0


def _video(args) -> int:
    from .video import stylize_video

    if not Path(args.input).is_file():
        raise CommandError(f"{args.input}: no such file")
    model = _load_model(args)
    if args.compile:
        model.accelerate()
    stats = stylize_video(model, args.input, args.output, args.style, to_style=args.to_style, batch_size=args.batch_size, phases=args.steady)
    print(f"wrote {args.output}: {stats.frames} frames at {stats.width}x{stats.height}, {float(stats.rate):.3g} fps; stylized at {stats.fps:.1f} frames/s on {model.device}")
    return 0


def _optimize(args) -> int:
    import csv

    import torch
    from tqdm.auto import tqdm

    from .data import load_style_image
    from .images import limit_longer_side, load_image, save_image, to_pil, to_tensor
    from .loss import LossConfig, PerceptualLoss
    from .optimize import optimize_images
    from .sheets import loss_curve

    output = Path(args.output)
    _check_output(output, folder=False)
    photo = limit_longer_side(load_image(args.content, max_pixels=args.max_pixels), args.size)
    painting = Path(args.style)
    load_image(painting, max_pixels=args.max_pixels)  # a bad painting is reported before VGG-16 loads
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    given = {k: getattr(args, k) for k in ("content_weight", "style_weight", "tv_weight", "pooling") if getattr(args, k) is not None}
    loss = PerceptualLoss(num_styles=1, config=LossConfig(**given)).to(device).eval()
    grams = loss.style_grams(load_style_image(painting, args.style_size or min(photo.size))[None].to(device))
    bar = tqdm(total=args.steps, unit="step", desc=f"optimize ({args.method})")

    def progress(step: int, losses: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(total=f"{losses['total']:.4g}")

    content = to_tensor(photo)[None].to(device)
    result = optimize_images(content, loss=loss, style_grams=grams, steps=args.steps, method=args.method, init=args.init, lr=args.lr, seed=args.seed, progress=progress)
    bar.close()
    save_image(to_pil(result.images[0]), output, quality=args.quality)
    stem = output.with_suffix("")
    with open(f"{stem}.loss.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "content", "style", "tv", "total"])
        writer.writeheader()
        writer.writerows({"step": step, **row} for step, row in enumerate(result.history, start=1))
    curves = {k: [row[k] for row in result.history] for k in ("total", "content", "style")}
    save_image(loss_curve(curves, title=f"{painting.name}: {args.method}, {args.init} init"), f"{stem}.loss.png")
    first, last = result.history[0]["total"], result.history[-1]["total"]
    print(f"wrote {output} ({photo.width}x{photo.height}, {args.steps} steps on {device}); total loss {first:.4g} after step 1 -> {last:.4g}")
    print(f"loss curve: {stem}.loss.csv, {stem}.loss.png")
    return 0


def _evaluate(args) -> int:
    import json

    from tqdm.auto import tqdm

    from .api import pretrained_file
    from .data import find_paintings, load_center_crops
    from .evaluate import evaluate, evaluated_styles, markdown_table
    from .files import atomic_path
    from .images import find_images, save_image, to_pil

    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        if json_path.suffix.lower() != ".json":
            raise CommandError(f"{json_path}: the report's name must end in .json")
        _check_writable(json_path.parent)
    photos_dir = Path(args.content)
    files = find_images(photos_dir)[: args.limit] if photos_dir.is_dir() else []
    if not files:
        raise CommandError(f"{photos_dir}: no photos found")
    if args.style_images is None:
        raise CommandError("give --style-images DIR: the folder with the paintings the model was trained on (found by style name)")
    model = _load_model(args)
    paintings = find_paintings(args.style_images, evaluated_styles(model.styles), model.training.get("style_files"))
    batches = -(-len(files) // args.batch_size) * len(evaluated_styles(model.styles))
    with tqdm(total=batches, unit="batch", desc="evaluate") as bar:
        report = evaluate(
            model, files, paintings, size=args.size, style_size=args.style_size, batch_size=args.batch_size,
            optimize_steps=args.optimize_steps, optimize_method=args.method, photo_root=photos_dir,
            model_name=str(args.model if args.model else pretrained_file()), progress=lambda name: bar.update(1),
        )  # fmt: skip
    table = markdown_table(report)
    print(table)
    if json_path is not None:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        stem = json_path.with_suffix("")
        Path(f"{stem}.md").write_text(table)
        shown = [to_pil(t) for t in load_center_crops(files[: args.sheet_photos], args.size)]
        save_image(model.style_sheet(shown), f"{stem}.sheet.jpg", quality=90)
        print(f"wrote {json_path}, {stem}.md, {stem}.sheet.jpg")
    return 0


def _parser() -> argparse.ArgumentParser:
    from .images import DEFAULT_MAX_PIXELS

    parser = _Parser(prog="cin-style", description="Multi-style neural style transfer.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_model(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--model", default=None, help="model file (.safetensors) or training checkpoint (.ckpt); default: the bundled paintings model")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")

    def with_images(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--max-pixels",
            type=_positive,
            default=DEFAULT_MAX_PIXELS,
            help=f"refuse images with more pixels than this, before decoding them (default {DEFAULT_MAX_PIXELS:,})",
        )
        p.add_argument("--quality", type=_percent, default=95, help="JPEG/WebP quality, 1-100 (default 95)")

    p = sub.add_parser("export", help="checkpoint -> standalone .safetensors model")
    p.add_argument("checkpoint", help="a training checkpoint (.ckpt) or model file")
    p.add_argument("-o", "--output", required=True, help="the model file to write (.safetensors)")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--credits", default=None, metavar="MANIFEST.csv", help="record each painting's title, artist, year and licence from this manifest")
    p.set_defaults(func=_export)

    p = sub.add_parser("styles", help="list a model's styles, one per line, with the paintings' credits")
    p.add_argument("model", nargs="?", default=None, help="model file or checkpoint (default: the bundled paintings model)")
    p.add_argument("--names-only", action="store_true", help="only the style names")
    p.set_defaults(func=_styles)

    p = sub.add_parser("stylize", help="stylize images or folders")
    with_model(p)
    p.add_argument("inputs", nargs="*", help="image files and/or folders (folders are searched recursively)")
    p.add_argument("--demo", action="store_true", help="stylize the bundled demo photo (every style, unless -s is given)")
    p.add_argument("-s", "--style", help="a style name or index, or a blend: 'starry_night=0.7,great_wave=0.3'")
    p.add_argument("--all-styles", action="store_true", help="one image per style, as a captioned contact sheet")
    p.add_argument("--strength", type=_unit, default=1.0, help="0 (the photo) to 1 (full style, default); needs a model with an identity row")
    p.add_argument("--mask", action="append", metavar="STYLE=FILE", help="paint where FILE is white in STYLE (repeat for more styles); -s fills the rest")
    p.add_argument("--labels", metavar="FILE", help="a label image (gray levels or palette indices); with --label VALUE=STYLE")
    p.add_argument("--label", action="append", metavar="VALUE=STYLE", help="the style of one label of --labels (repeat)")
    p.add_argument("--feather", type=float, default=0.0, metavar="PX", help="soften mask edges over about PX pixels (default 0: hard)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours; take only the painting's strokes (luminance-only transfer)")
    p.add_argument("-o", "--output", required=True, help="output image (one input) or folder (several, or a folder)")
    p.add_argument("--size", type=_positive, default=None, help="shrink so that the longer side is at most N pixels")
    p.add_argument(
        "--tile",
        type=_tile,
        default=None,
        metavar="auto|off|N",
        help="process large images in N-pixel tiles with whole-image statistics (same look, bounded memory); "
        "auto (default): tiles for large images on CPU and after running out of GPU memory",
    )
    p.add_argument(
        "--devices", type=_positive, default=1, metavar="N",
        help="share a folder out between N devices (GPUs, or CPU processes with --device cpu) through Lightning's predict loop with DDP",
    )  # fmt: skip
    with_images(p)
    p.set_defaults(func=_stylize)

    p = sub.add_parser("blend", help="interpolation grid between 2, 3 or 4 styles")
    with_model(p)
    p.add_argument("input", help="a photo")
    p.add_argument("-s", "--style", required=True, help="2 to 4 style names separated by commas: a,b,c,d")
    p.add_argument("--steps", type=_positive, default=5, help=f"images per side, 2-{MAX_BLEND_STEPS} (default 5)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--size", type=_positive, default=256, help="longer side of each cell (default 256)")
    with_images(p)
    p.set_defaults(func=_blend)

    p = sub.add_parser("video", help="stylize a video file (frame rate and size kept, audio dropped)")
    with_model(p)
    p.add_argument("input", help="a video file")
    p.add_argument("-s", "--style", required=True, help="a style or blend, as for stylize")
    p.add_argument("--to-style", default=None, help="blend linearly from --style to this style over the clip")
    p.add_argument("-o", "--output", required=True, help="the video to write (.mp4, .mkv, .mov, ...)")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument(
        "--steady", type=int, choices=[1, 4, 16], default=1,
        help="average 4 or 16 sub-pixel-shifted passes per frame: less flicker on camera motion, 4x or 16x the work (default 1: off)",
    )  # fmt: skip
    p.add_argument(
        "--compile", action="store_true",
        help="run a compiled bfloat16 channels-last graph (for GPUs: the first batch waits for compilation; --to-style blends reuse the graph)",
    )  # fmt: skip
    p.set_defaults(func=_video)

    p = sub.add_parser("optimize", help="Gatys et al.: optimize the pixels of one image (slow; the quality reference)")
    p.add_argument("--content", required=True, help="the photo")
    p.add_argument("--style", required=True, help="the painting (an image file)")
    p.add_argument("-o", "--output", required=True, help="the image to write; the loss curve goes beside it (.loss.csv, .loss.png)")
    p.add_argument("--steps", type=_positive, default=300, help="optimizer steps (default 300)")
    p.add_argument("--size", type=_positive, default=512, help="longer side of the result (default 512)")
    p.add_argument("--style-size", type=_positive, default=None, help="shorter side of the painting for its Gram targets (default: the photo's shorter side)")
    p.add_argument("--init", choices=["content", "noise"], default="content", help="start from the photo (default) or from noise")
    p.add_argument("--method", choices=["lbfgs", "adam"], default="lbfgs", help="L-BFGS (default) or Adam")
    p.add_argument("--lr", type=float, default=None, help="step size (default: 1 for L-BFGS with line search, 0.02 for Adam)")
    p.add_argument("--content-weight", type=float, default=None, help="default: as in training (cin_style.loss.LossConfig)")
    p.add_argument("--style-weight", type=float, default=None, help="default: as in training")
    p.add_argument("--tv-weight", type=float, default=None, help="default: as in training")
    p.add_argument("--pooling", choices=["max", "avg"], default=None, help="VGG-16 pooling (default max, as in training; Gatys et al. prefer avg)")
    p.add_argument("--seed", type=int, default=0, help="for --init noise")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    with_images(p)
    p.set_defaults(func=_optimize)

    p = sub.add_parser("evaluate", help="a model's losses on held-out photos, per style (JSON, Markdown, contact sheet)")
    with_model(p)
    p.add_argument("--content", required=True, help="a folder of held-out photos")
    p.add_argument("--style-images", default=None, help="the folder of paintings the model was trained on (found by name)")
    p.add_argument("--size", type=_positive, default=256, help="photos: shorter side resized to N, centre crop N x N (default 256)")
    p.add_argument("--style-size", type=_positive, default=None, help="paintings' shorter side (default: as recorded at training, else 256)")
    p.add_argument("--optimize-steps", type=int, default=0, help="also run Gatys et al. for K steps on the same photos and report the ratio")
    p.add_argument("--method", choices=["lbfgs", "adam"], default="lbfgs", help="optimizer for --optimize-steps")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N photos")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--sheet-photos", type=_positive, default=4, help="photos in the contact sheet (default 4)")
    p.add_argument("--json", default=None, help="write the report here, with a .md table and a .sheet.jpg beside it")
    p.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] == "train":
        return _train(argv[1:])
    if argv[0] not in ("export", "styles", "stylize", "blend", "video", "optimize", "evaluate"):
        print(f"cin-style: unknown command {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return EXIT_USAGE
    args = _parser().parse_args(argv)
    from .images import ImageLoadError
    from .modelfile import ModelFileError
    from .styles import StyleError

    def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"cin-style {args.command}: warning: {message}", file=sys.stderr)

    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    try:
        return args.func(args)
    except (CommandError, ModelFileError, StyleError, ImageLoadError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"cin-style {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cin-style {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cin-style styles | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
