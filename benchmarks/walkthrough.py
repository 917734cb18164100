"""Walk the two paths of issue 34 by tracing them: ``cin-style stylize photo -s NAME`` and the
app's weight slider (its preview), from the first call to the conditional instance norm.

For each path this records every call into a ``cin_style`` function (``sys.setprofile``) until
the first ``ConditionalInstanceNorm2d.forward``, and reports the files it went through, the
number of file boundaries crossed (consecutive calls in different files), and how many times the
style was parsed from text (``parse_style_string``) or turned into weights from a name or a
mapping (``blend_weights`` on anything but an already parsed ``Blend``).

    python -m benchmarks.walkthrough [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cin_style

ROOT = Path(cin_style.__file__).parent


class _Walk(Exception):
    """Raised at the first CIN layer: the walk is over."""


def trace(run) -> dict:
    """Run ``run()`` and trace it to the first ``ConditionalInstanceNorm2d.forward``."""
    from cin_style.network.styles import Blend

    files: list[str] = []
    parses = {"parse_style_string": 0, "blend_weights on a name or mapping": 0}

    def profile(frame, event, arg):
        if event != "call":
            return
        path = Path(frame.f_code.co_filename)
        if ROOT not in path.parents:
            return
        name = str(path.relative_to(ROOT))
        if not files or files[-1] != name:
            files.append(name)
        code = frame.f_code.co_name
        if code == "parse_style_string":
            parses["parse_style_string"] += 1
        elif code == "blend_weights" and not isinstance(frame.f_locals.get("style"), Blend):
            parses["blend_weights on a name or mapping"] += 1
        elif code == "forward" and "self" in frame.f_locals and type(frame.f_locals["self"]).__name__ == "ConditionalInstanceNorm2d":
            raise _Walk

    sys.setprofile(profile)
    try:
        run()
    except _Walk:
        pass
    finally:
        sys.setprofile(None)
    return {"files": sorted(set(files)), "file_count": len(set(files)), "boundaries": len(files) - 1, "sequence": files, **parses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = walk()
    for path, r in results.items():
        print(f"{path}: {r['file_count']} files, {r['boundaries']} file boundaries to the CIN layer; "
              f"style parsed from text {r['parse_style_string']}x, weights from a name or mapping {r['blend_weights on a name or mapping']}x")
        print("  " + " -> ".join(r["sequence"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def walk() -> dict[str, dict]:
    """Both paths traced (:func:`trace`), by name."""

    from PIL import Image

    from cin_style import StyleModel
    from cin_style.app import paint, style_blend
    from cin_style.cli import main as cli_main
    from cin_style.inference.style_model import demo_photo_path

    model = StyleModel.pretrained(device="cpu")  # loaded once, as the app holds it
    style = next(s for s in model.styles if s != "identity")
    other = [s for s in model.styles if s not in ("identity", style)][0]
    photo = Image.open(demo_photo_path()).convert("RGB").resize((96, 64))
    out, demo = Path(tempfile.mkdtemp()) / "out.png", str(demo_photo_path())
    results = {
        "cin-style stylize": trace(lambda: cli_main(["stylize", demo, "-s", style, "--size", "96", "-o", str(out)])),
        "app weight slider": trace(lambda: paint(model, photo, style_blend(model, [style, other, None, None], [1.0, 0.4, 0.0, 0.0]))),
    }
    return results


if __name__ == "__main__":
    sys.exit(main())
