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

USAGE = """usage: cin-style COMMAND [ARGS...]

commands:
  train     train one network on N styles (Hydra overrides, e.g. experiment=smoke)
  export    turn a training checkpoint into a standalone .safetensors model file
  styles    list a model's styles
  stylize   stylize photos or folders with a style or a blend of styles
  blend     the CIN paper's interpolation grid between 2, 3 or 4 styles
  video     stylize a video file

examples:
  cin-style train experiment=smoke
  cin-style train experiment=paintings trainer.max_steps=200 data.batch_size=4
  cin-style export outputs/smoke/.../checkpoints/last.ckpt -o smoke.safetensors
  cin-style stylize -m smoke.safetensors photo.jpg -s "great_wave=0.7,starry_night=0.3" -o out.jpg

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

        from .train import train
        from .vgg import VGGWeightsError

        try:
            train(cfg, HydraConfig.get().runtime.output_dir)
        except (FloatingPointError, VGGWeightsError, InstantiationException, FileNotFoundError) as err:
            # Problems the user can act on: one line, not Hydra's traceback. SystemExit passes through Hydra.
            print(f"cin-style train: error: {err}", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    sys.argv = ["cin-style train", *argv]
    main()
    return 0


def _load_model(args):
    from .api import StyleModel

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
    value = _positive(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"a tile must be at least 32 pixels, got {value}")
    return value


def _export(args) -> int:
    from .modelfile import read_model, write_model

    loaded = read_model(args.checkpoint)
    out = write_model(args.output, loaded.transformer, loaded.styles, training=loaded.training, credits=loaded.credits, half=args.half)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(loaded.styles)} styles)")
    return 0


def _styles(args) -> int:
    from .modelfile import read_model

    for name in read_model(args.model).styles:
        print(name)
    return 0


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
    from .data import find_images

    pairs = []
    for item in inputs:
        if item.is_dir():
            pairs += [(f, f.relative_to(item)) for f in find_images(item)]
        elif item.exists():
            pairs.append((item, Path(item.name)))
        else:
            raise CommandError(f"{item}: no such file or folder")
    return pairs


def _stylize(args) -> int:
    from tqdm.auto import tqdm

    from .images import ImageLoadError, load_image, save_image

    if not args.all_styles and args.style is None:
        raise CommandError("give a style with -s/--style NAME or a blend like -s 'a=0.7,b=0.3', or --all-styles")
    output = Path(args.output)
    pairs = _collect_inputs([Path(p) for p in args.inputs])
    # Several inputs, a folder, or an existing folder as the output (like cp) mean folder mode.
    folder_mode = len(pairs) != 1 or any(Path(p).is_dir() for p in args.inputs) or output.is_dir()
    _check_output(output, folder=folder_mode)
    model = _load_model(args)
    if args.style is not None:
        model.weights(args.style)  # a bad style is reported before any image is read

    def one(src: Path, dst: Path) -> None:
        photo = load_image(src, max_pixels=args.max_pixels)
        if args.all_styles:
            image = model.style_sheet(photo, size=args.size)
        else:
            image = model.stylize(photo, style=args.style, size=args.size, tile=args.tile, progress=not folder_mode)
        save_image(image, dst, quality=args.quality)

    if not folder_mode:
        src, _ = pairs[0]
        one(src, output)
        print(f"wrote {output}")
        return 0

    failures: list[str] = []
    for src, rel in tqdm(pairs, unit="image", desc="stylize"):
        try:
            one(src, output / rel)
        except (ImageLoadError, OSError, ValueError) as err:
            failures.append(str(err) if str(src) in str(err) else f"{src}: {err}")
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
    stats = stylize_video(model, args.input, args.output, args.style, to_style=args.to_style, batch_size=args.batch_size)
    print(f"wrote {args.output}: {stats.frames} frames at {stats.width}x{stats.height}, {float(stats.rate):.3g} fps; stylized at {stats.fps:.1f} frames/s on {model.device}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from .images import DEFAULT_MAX_PIXELS

    parser = _Parser(prog="cin-style", description="Multi-style neural style transfer.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_model(p: argparse.ArgumentParser) -> None:
        p.add_argument("-m", "--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
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
    p.set_defaults(func=_export)

    p = sub.add_parser("styles", help="list a model's styles, one per line")
    p.add_argument("model", help="model file or checkpoint")
    p.set_defaults(func=_styles)

    p = sub.add_parser("stylize", help="stylize images or folders")
    with_model(p)
    p.add_argument("inputs", nargs="+", help="image files and/or folders (folders are searched recursively)")
    p.add_argument("-s", "--style", help="a style name or index, or a blend: 'starry_night=0.7,great_wave=0.3'")
    p.add_argument("--all-styles", action="store_true", help="one image per style, as a captioned contact sheet")
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
    p.set_defaults(func=_video)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] == "train":
        return _train(argv[1:])
    if argv[0] not in ("export", "styles", "stylize", "blend", "video"):
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
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    sys.exit(main())
