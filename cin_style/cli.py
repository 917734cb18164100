"""The ``cin-style`` command line.

``cin-style train [HYDRA OVERRIDES...]`` composes the config in ``cin_style.conf`` (the
repository's ``conf/`` folder) with Hydra, so every key can be overridden and ``-m`` runs
sweeps. The other commands use trained networks. The command line parses arguments, calls the
library and prints what it did; errors the user can fix are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

# Before PyTorch is imported (it reads this once): back large CPU tensors with transparent huge
# pages. Every layer of a big image allocates fresh tensors of hundreds of MB, and without huge
# pages the kernel faults and zeroes them 4 KB at a time: 1.2 million faults per 1024x1024
# forward pass on CPU, a third of its time. Set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

EXAMPLES = """examples:
  cin-style train experiment=smoke
  cin-style export outputs/smoke/.../checkpoints/last.ckpt -o smoke.safetensors
  cin-style stylize -m smoke.safetensors photo.jpg -s "great_wave=0.7,starry_night=0.3" -o out.jpg
  cin-style stylize photo.jpg -s van_gogh_starry_night --mask hokusai_great_wave=sky.png --feather 16 -o out.jpg
  cin-style app

Run 'cin-style COMMAND --help' for a command's options."""

EXIT_USAGE = 2


class CommandError(Exception):
    """A problem to report in one line, without a traceback."""


def _load_model(args, *, onnx: bool = False, engine: str | None = None):
    """The model named by -m (or the bundled one); an ONNX file only for the commands that take one.
    ``engine``: the command's own choice, else ``--engine`` where the command has it, else auto."""
    from cin_style.inference.loader import load_model

    if not onnx and args.model is not None and Path(args.model).suffix.lower() == ".onnx":
        raise CommandError(f"ONNX files serve 'cin-style stylize' and 'styles'; give the .safetensors model to '{args.command}' (it needs PyTorch)")
    return load_model(args.model, device=getattr(args, "device", None), engine=engine or getattr(args, "engine", "auto"))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other error of the command line."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, low: float | None = None, high: float | None = None):
    """An argparse type: a ``kind`` number within [low, high]."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high) or value != value:
            bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


_positive, _unit, _percent = _number(int, 1), _number(float, 0.0, 1.0), _number(int, 1, 100)


def _tile(text: str) -> int | None:
    """--tile auto|off|N -> None (decide), 0 (never) or a tile side (checked by the library)."""
    return {"auto": None, "off": 0, "0": 0}[text] if text in ("auto", "off", "0") else _positive(text)


def _stroke(text: str) -> float | str:
    """--stroke FACTOR|native, parsed by the library (its own message for a bad value)."""
    from cin_style.inference.strokes import StrokeError, parse_stroke

    try:
        return parse_stroke(text)
    except StrokeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _export(args) -> int:
    from cin_style.io.modelfile import convert_model

    loaded = convert_model(args.checkpoint, args.output, credits=args.credits, half=args.half)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB, {len(loaded.styles)} styles)")
    return 0


def _styles(args) -> int:
    model = _load_model(args, onnx=True)
    print("\n".join(model.styles if args.names_only else model.describe_styles()))
    return 0


def _stylize(args) -> int:
    from cin_style.inference.regions import masks_from_options
    from cin_style.io.images import plan_outputs

    masks = masks_from_options(args.mask or (), args.labels, args.label or ())
    if args.demo:
        from cin_style.inference.style_model import demo_photo_path

        if args.inputs:
            raise CommandError("--demo stylizes the bundled photo; give either --demo or input files")
        args.inputs = [str(demo_photo_path())]
        args.all_styles = args.all_styles or (args.style is None and masks is None)
    elif not args.inputs:
        raise CommandError("give one or more photos or folders to stylize (or --demo)")
    if not args.all_styles and args.style is None and masks is None and args.style_image is None:
        raise CommandError("give a style with -s/--style NAME or a blend like -s 'a=0.7,b=0.3', masks with --mask STYLE=FILE, or --all-styles")
    pairs, folder_mode = plan_outputs(args.inputs, args.output)
    if args.style_image is not None and str(args.model).lower().endswith(".onnx"):
        raise CommandError("--style-image fits a new style in PyTorch: give the .safetensors model, not the ONNX file")
    model = _load_model(args, onnx=True)
    if args.style_image is not None:  # fitted once, then from the user cache (StyleModel.add_style)
        args.style = args.style if args.style is not None else _fit_style(model, args.style_image, args)
    # The style is parsed here, once; what goes down is the parsed Blend, which no layer below parses again.
    style = model.parse_style(args.style) if args.style is not None and not args.all_styles else None
    options = {k: getattr(args, k) for k in ("strength", "feather", "preserve_color", "stroke", "refine", "style_images", "max_pixels", "quality", "size", "tile")}
    options.update(sheet=args.all_styles, masks=masks)  # stylize_file(s) check the whole request before reading any image
    end = f"\nnext: cin-style add-style {args.style_image} -o {Path(args.style_image).stem}.safetensors keeps this style in a model file; --style-image is instant from now on (cached)" if args.style_image else ""
    if not folder_mode:
        model.stylize_file(*pairs[0], style, **options, progress=True)
        print(f"wrote {args.output}{end}")
        return 0
    failures = model.stylize_files(pairs, style, devices=args.devices, **options)
    if failures is None:
        return 0  # another process of a multi-device run: the first one reports for all
    print(f"wrote {len(pairs) - len(failures)} of {len(pairs)} images to {args.output}" + (f" on {args.devices} devices" if args.devices != 1 else "") + end)
    if failures:
        print(f"{len(failures)} failed:\n" + "\n".join(f"  {line}" for line in failures), file=sys.stderr)
    return EXIT_USAGE if failures else 0


def _add_style(args) -> int:
    from cin_style.io.files import check_output

    check_output(args.output, folder=False, suffixes={".safetensors"})
    model = _load_model(args)
    name = _fit_style(model, args.painting, args)
    out = model.save(args.output)
    print(f"wrote {out} ({len(model.styles)} styles)\nnext: cin-style stylize -m {out} photo.jpg -s {name} -o out.jpg")
    return 0


def _fit_style(model, painting: str, args) -> str:
    """Add ``painting`` to ``model`` (add-style, stylize --style-image), saying what happens."""
    from time import perf_counter

    from cin_style.inference.new_style import FitSettings

    steps = getattr(args, "steps", None) or getattr(args, "fit_steps", None)
    print(f"{painting}: nearest blend of the model's styles: " + ", ".join(f"{k}={v:g}" for k, v in model.nearest_blend(painting).items()))
    given = {k: getattr(args, k, None) for k in ("name", "title", "artist", "photos")}  # stylize --style-image has none of them
    start = perf_counter()
    name = model.add_style(painting, **given, replace=getattr(args, "replace", False), settings=FitSettings(**({"steps": steps} if steps else {})))
    print(f"style {name}: fitted in {perf_counter() - start:.0f} s (only its gamma/beta row; every other row and convolution as it was)")
    return name


def _blend(args) -> int:
    from cin_style.io.files import check_output
    from cin_style.io.images import OUTPUT_FORMATS, save_image

    check_output(args.output, folder=False, suffixes=OUTPUT_FORMATS)
    names = [s.strip() for s in args.style.split(",") if s.strip()]
    grid = _load_model(args).blend_grid(args.input, names, steps=args.steps, size=args.size, stroke=args.stroke, max_pixels=args.max_pixels)
    save_image(grid, args.output, quality=args.quality)
    print(f"wrote {args.output}")
    return 0


def _video(args) -> int:
    from cin_style.inference.video import stylize_video

    model = _load_model(args)
    model = model.accelerate() if args.compile else model
    style, to_style = (model.parse_style(s) if s is not None else None for s in (args.style, args.to_style))  # parsed once, here
    stats = stylize_video(model, args.input, args.output, style, to_style=to_style, batch_size=args.batch_size, phases=args.steady, stroke=args.stroke)
    print(f"wrote {args.output}: {stats.frames} frames at {stats.width}x{stats.height}, {float(stats.rate):.3g} fps; stylized at {stats.fps:.1f} frames/s on {model.device}")
    return 0


def _optimize(args) -> int:
    from cin_style.io.files import check_output
    from cin_style.io.images import OUTPUT_FORMATS
    from cin_style.losses.optimize import optimize_file

    check_output(args.output, folder=False, suffixes=OUTPUT_FORMATS)
    given = {k: getattr(args, k) for k in ("content_weight", "style_weight", "tv_weight", "pooling") if getattr(args, k) is not None}
    options = {k: getattr(args, k) for k in ("size", "style_size", "steps", "method", "init", "lr", "seed", "device", "max_pixels", "quality")}
    result, (image, table, picture) = optimize_file(args.content, args.style, args.output, loss=given, **options)
    print(f"wrote {image} ({result.images.shape[-1]}x{result.images.shape[-2]}, {args.steps} steps on {result.images.device}); total loss {result.history[0]['total']:.4g} after step 1 -> {result.history[-1]['total']:.4g}")
    print(f"loss curve: {table}, {picture}")
    return 0


def _evaluate(args) -> int:
    from cin_style.io.files import check_output
    from cin_style.quality.evaluate import OptimizedCache, evaluate_folder, markdown_table, write_report

    if args.json is not None:
        check_output(args.json, folder=False, suffixes={".json"})
    # The network as trained, in exact float32: the gates' figures must not depend on whether the
    # CPU has bfloat16 (cin_style.inference.engines).
    model = _load_model(args, engine="torch")
    options = {k: getattr(args, k) for k in ("limit", "size", "style_size", "batch_size", "optimize_steps", "optimize_photos")}
    cache = OptimizedCache(args.optimize_cache, recompute=args.recompute) if args.optimize_steps else None
    report = evaluate_folder(model, args.content, args.style_images, **options, optimize_method=args.method, optimize_cache=cache, progress=True)
    print(markdown_table(report))
    if cache is not None:
        print(f"Gatys et al.'s figures: {cache.hits} batch(es) from the cache, {cache.misses} computed and kept in {cache.folder}")
    if args.json is not None:
        sheet = model.style_sheet([Path(args.content, p) for p in report["photos"][: args.sheet_photos]], size=args.size)
        print("wrote " + ", ".join(map(str, write_report(report, args.json, sheet=sheet))))
    return 0


def _app(args) -> int:
    from .app import launch

    launch(args.model, port=args.port, share=args.share, host=args.host, style_images=args.style_images)
    return 0


def _parser() -> argparse.ArgumentParser:
    from cin_style.inference.stylizer import ENGINES
    from cin_style.io.images import DEFAULT_MAX_PIXELS

    parser = _Parser(prog="cin-style", description="Multi-style neural style transfer.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("train", help="train one network on N styles (Hydra overrides, e.g. experiment=smoke; see cin-style train --help)", add_help=False)

    def command(func, help: str) -> argparse.ArgumentParser:  # `cin-style export` runs _export, and so on
        p = sub.add_parser(func.__name__.lstrip("_").replace("_", "-"), help=help)
        p.set_defaults(func=func)
        return p

    def with_model(p: argparse.ArgumentParser, onnx: bool = False) -> None:
        kinds = "model file (.safetensors" + (", or .onnx run by onnxruntime" if onnx else "") + ") or training checkpoint (.ckpt)"
        p.add_argument("-m", "--model", default=None, help=f"{kinds}; default: the bundled paintings model")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")

    def with_images(p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS, help=f"refuse images with more pixels than this, before decoding them (default {DEFAULT_MAX_PIXELS:,})")
        p.add_argument("--quality", type=_percent, default=95, help="JPEG/WebP quality, 1-100 (default 95)")

    def with_stroke(p: argparse.ArgumentParser) -> None:
        p.add_argument("--stroke", type=_stroke, default=1.0, metavar="FACTOR|native", help="stroke size relative to the picture, the same at any resolution: 1 (default) the preview's look, 0.5 finer, 2 larger; native = the network over every pixel at full size (strokes shrink on large photos)")

    p = command(_export, "checkpoint -> standalone .safetensors model")
    p.add_argument("checkpoint", help="a training checkpoint (.ckpt) or model file")
    p.add_argument("-o", "--output", required=True, help="the model file to write: .safetensors, or .onnx (one graph for every style and blend; needs cin-style[onnx])")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size; .safetensors only)")
    p.add_argument("--credits", default=None, metavar="MANIFEST.csv", help="record each painting's title, artist, year and licence from this manifest")

    p = command(_styles, "list a model's styles, one per line, with the paintings' credits")
    p.add_argument("model", nargs="?", default=None, help="model file (.safetensors or .onnx) or checkpoint (default: the bundled paintings model)")
    p.add_argument("--names-only", action="store_true", help="only the style names")

    p = command(_stylize, "stylize images or folders")
    with_model(p, onnx=True)
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
    with_stroke(p)
    p.add_argument("--refine", type=_positive, default=0, metavar="STEPS", help="then run STEPS L-BFGS steps of the optimization method (Gatys et al.) from the network's painting: the best stills (about 2 s a step at the working size on a 2-core CPU; needs --style-images and the .safetensors model)")
    p.add_argument("--style-images", default=None, metavar="DIR", help="with --refine: the folder of paintings the model was trained on (found by name)")
    p.add_argument("--style-image", default=None, metavar="PAINTING", help="paint in the style of this painting: its row is fitted on first use (one to two minutes on a CPU) and kept in the user cache, so the next time is instant; -s may then blend it by its file name")
    p.add_argument("--fit-steps", type=_positive, default=None, metavar="N", help="with --style-image: the fit's optimizer steps (default: as add-style)")
    p.add_argument("-o", "--output", required=True, help="output image (one input) or folder (several, or a folder)")
    p.add_argument("--size", type=_positive, default=None, help="shrink so that the longer side is at most N pixels")
    p.add_argument("--tile", type=_tile, default=None, metavar="auto|off|N", help="process large images in N-pixel tiles with whole-image statistics (same look, bounded memory); auto (default): tiles for large images on CPU and after running out of GPU memory")
    p.add_argument("--engine", choices=ENGINES, default="auto", help="what paints whole images: auto (default) = the fastest measured here (bfloat16 where the CPU has it natively, else NNPACK's Winograd/FFT convolutions); torch = PyTorch's direct float32 convolutions only (exact); nnpack, bf16, compiled force those; onnx = the ONNX graph beside the model file through onnxruntime (the bundled model has one)")
    p.add_argument("--devices", type=_positive, default=1, metavar="N", help="share a folder out between N devices (GPUs, or CPU processes with --device cpu) through Lightning's predict loop with DDP")
    with_images(p)

    p = command(_add_style, "add a painting as a new style (fits one gamma/beta row; every other weight stays as it is)")
    with_model(p)
    p.add_argument("painting", help="the painting (an image file)")
    p.add_argument("-o", "--output", required=True, help="the model file to write (.safetensors), the base model's styles and the new one")
    p.add_argument("--name", default=None, help="the style's name (default: from the file name)")
    p.add_argument("--replace", action="store_true", help="refit a style of that name instead of refusing")
    p.add_argument("--title", default=None, help="the painting's title, for the style's credit (default: the file name)")
    p.add_argument("--artist", default=None, help="the painter, for the style's credit")
    p.add_argument("--photos", default=None, metavar="DIR", help="fit on these photos (default: the photos bundled with cin-style)")
    p.add_argument("--steps", type=_positive, default=None, help="optimizer steps (default: cin_style.inference.new_style.FitSettings)")

    p = command(_blend, "interpolation grid between 2, 3 or 4 styles")
    with_model(p)
    p.add_argument("input", help="a photo")
    p.add_argument("-s", "--style", required=True, help="2 to 4 style names separated by commas: a,b,c,d")
    p.add_argument("--steps", type=_positive, default=5, help="images per side, 2-33 (default 5)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--size", type=_positive, default=256, help="longer side of each cell (default 256)")
    with_stroke(p)
    with_images(p)

    p = command(_video, "stylize a video file (frame rate and size kept, audio dropped)")
    with_model(p)
    p.add_argument("input", help="a video file")
    p.add_argument("-s", "--style", required=True, help="a style or blend, as for stylize")
    p.add_argument("--to-style", default=None, help="blend linearly from --style to this style over the clip")
    p.add_argument("-o", "--output", required=True, help="the video to write (.mp4, .mkv, .mov, ...)")
    p.add_argument("--batch-size", type=_positive, default=8)
    with_stroke(p)
    p.add_argument("--steady", type=int, choices=[1, 4, 16], default=1, help="average 4 or 16 sub-pixel-shifted passes per frame: less flicker on camera motion, 4x or 16x the work (default 1: off)")
    p.add_argument("--compile", action="store_true", help="run a compiled bfloat16 channels-last graph (for GPUs: the first batch waits for compilation; --to-style blends reuse the graph)")

    p = command(_optimize, "Gatys et al.: optimize the pixels of one image (slow; the quality reference)")
    p.add_argument("--content", required=True, help="the photo")
    p.add_argument("--style", required=True, help="the painting (an image file)")
    p.add_argument("-o", "--output", required=True, help="the image to write; the loss curve goes beside it (.loss.csv, .loss.png)")
    p.add_argument("--steps", type=_positive, default=300, help="optimizer steps (default 300)")
    p.add_argument("--size", type=_positive, default=512, help="longer side of the result (default 512)")
    p.add_argument("--style-size", type=_positive, default=None, help="shorter side of the painting for its Gram targets (default: the photo's shorter side)")
    p.add_argument("--init", choices=["content", "noise"], default="content", help="start from the photo (default) or from noise")
    p.add_argument("--method", choices=["lbfgs", "adam"], default="lbfgs", help="L-BFGS (default) or Adam")
    p.add_argument("--lr", type=float, default=None, help="step size (default: 1 for L-BFGS with line search, 0.02 for Adam)")
    for term in ("content", "style", "tv"):
        p.add_argument(f"--{term}-weight", type=float, default=None, help="default: as in training (cin_style.losses.perceptual.LossConfig)")
    p.add_argument("--pooling", choices=["max", "avg"], default=None, help="VGG-16 pooling (default max, as in training; Gatys et al. prefer avg)")
    p.add_argument("--seed", type=int, default=0, help="for --init noise")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    with_images(p)

    p = command(_evaluate, "a model's losses on held-out photos, per style (JSON, Markdown, contact sheet)")
    with_model(p)
    p.add_argument("--content", required=True, help="a folder of held-out photos")
    p.add_argument("--style-images", required=True, help="the folder of paintings the model was trained on (found by style name)")
    p.add_argument("--size", type=_positive, default=256, help="photos: shorter side resized to N, centre crop N x N (default 256)")
    p.add_argument("--style-size", type=_positive, default=None, help="paintings' shorter side (default: as recorded at training, else 256)")
    p.add_argument("--optimize-steps", type=int, default=0, help="also run Gatys et al. for K steps on the same photos; report the median ratio")
    p.add_argument("--method", choices=["lbfgs", "adam"], default="lbfgs", help="optimizer for --optimize-steps")
    p.add_argument("--optimize-photos", type=_positive, default=None, metavar="K", help="run the optimizer on K photos per style, a different K for each style (default: all)")
    p.add_argument("--optimize-cache", default=None, metavar="DIR", help="keep the optimizer's figures here for the next evaluation (default ~/.cache/cin_style/optimized)")
    p.add_argument("--recompute", action="store_true", help="run the optimizer even where the cache has its figures")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N photos")
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument("--sheet-photos", type=_positive, default=4, help="photos in the contact sheet (default 4)")
    p.add_argument("--json", default=None, help="write the report here, with a .md table and a .sheet.jpg beside it")

    p = command(_app, "the style-blending studio in the browser (Gradio; pip install \"cin-style[app]\")")
    p.add_argument("-m", "--model", default=None, help="model file (.safetensors or .onnx; default: the bundled paintings model)")
    p.add_argument("--port", type=_positive, default=7860, help="default 7860")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--share", action=argparse.BooleanOptionalAction, default=False, help="a public gradio.live link (default: no)")
    p.add_argument("--style-images", default=None, metavar="DIR", help="the paintings the model was trained on: offers to refine the full-resolution image (--refine)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # Hydra parses training's arguments
        from cin_style.training.train import main as train_main

        return train_main(argv[1:])
    parser = _parser()
    if not argv or argv[0] == "help":
        parser.print_help()
        return 0
    args = parser.parse_args(argv)

    def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"cin-style {args.command}: warning: {message}", file=sys.stderr)

    shown, warnings.showwarning = warnings.showwarning, one_line_warning
    try:
        return args.func(args)
    except (CommandError, FileNotFoundError, ValueError, RuntimeError) as err:  # the library's errors for bad input are ValueErrors
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
