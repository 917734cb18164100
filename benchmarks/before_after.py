"""Two ``cin-style evaluate --json`` reports side by side, per style: the before/after table of
a retrained model (issue 33's balanced objective against the shipped model).

    python -m benchmarks.before_after BEFORE.json AFTER.json [--tolerance 0.05] [--markdown OUT.md]

Per style: the network/Gatys-100 ratio before and after and its change, the style and content
terms (means over the report's photos) and the identification. A style whose ratio is worse by
more than ``--tolerance`` (default 5 %) is marked, and the exit code is 1 when there is one. Both
reports must score the same photos with the same loss and the same Gatys et al. figures (the
``--optimize-cache`` of ``cin-style evaluate``), or the ratios do not compare; that is checked.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _load(path: str) -> dict:
    report = json.loads(Path(path).read_text())
    if not str(report.get("schema", "")).startswith("cin-style-evaluate/"):
        raise SystemExit(f"{path}: not a report of cin-style evaluate --json")
    if not any("ratio" in row for row in report["styles"].values()):
        raise SystemExit(f"{path}: no network/Gatys ratios (evaluate it with --optimize-steps)")
    return report


def compare(before: dict, after: dict, *, tolerance: float = 0.05) -> tuple[list[str], list[str]]:
    """The Markdown lines of the table and the styles whose ratio is worse by more than ``tolerance``."""
    for key in ("photos", "size", "optimize"):
        if before.get(key) != after.get(key):
            raise SystemExit(f"the reports differ in {key!r}: their ratios do not compare")
    scoring = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "pooling", "style_size")
    if any(before["loss"].get(k) != after["loss"].get(k) for k in scoring):
        raise SystemExit("the reports score with different losses: their ratios do not compare")
    lines = [
        "| style | ratio before | ratio after | change | style before → after | content before → after | identified before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    worse, ratios = [], ([], [])
    ident = before.get("identification", {}).get("per_style", {}), after.get("identification", {}).get("per_style", {})
    for name, old in before["styles"].items():
        new = after["styles"].get(name)
        if new is None or "ratio" not in old or "ratio" not in new:
            continue
        change = new["ratio"] / old["ratio"] - 1
        mark = " **worse**" if change > tolerance else ""
        if mark:
            worse.append(name)
        ratios[0].append(old["ratio"])
        ratios[1].append(new["ratio"])
        seen = " → ".join(f"{d[name]:.0%}" if name in d else "–" for d in ident)
        lines.append(
            f"| {name} | {old['ratio']:.2f} | {new['ratio']:.2f} | {100 * change:+.1f} %{mark} "
            f"| {old['style']:.2f} → {new['style']:.2f} | {old['content']:.2f} → {new['content']:.2f} | {seen} |"
        )
    medians = [statistics.median(r) for r in ratios]
    accuracy = [d.get("identification", {}).get("accuracy") for d in (before, after)]
    lines.append(
        f"| **median** | **{medians[0]:.2f}** | **{medians[1]:.2f}** | {100 * (medians[1] / medians[0] - 1):+.1f} % "
        f"| {before['mean']['style']:.2f} → {after['mean']['style']:.2f} (mean) | {before['mean']['content']:.2f} → {after['mean']['content']:.2f} (mean) "
        f"| {' → '.join(f'{a:.1%}' if a is not None else '–' for a in accuracy)} |"
    )
    return lines, worse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--tolerance", type=float, default=0.05, help="a ratio worse by more than this fraction is marked (default 0.05)")
    parser.add_argument("--markdown", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    lines, worse = compare(_load(args.before), _load(args.after), tolerance=args.tolerance)
    print("\n".join(lines))
    print(f"\n{len(worse)} style(s) worse by more than {args.tolerance:.0%}" + (f": {', '.join(worse)}" if worse else ""))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
