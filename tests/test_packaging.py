import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_configs_and_entry_point(tmp_path):
    """The configs must be found from a wheel install, not only from a checkout."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("cin_style-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for yaml in ("train.yaml", "data/photos.yaml", "experiment/smoke.yaml", "experiment/paintings.yaml", "experiment/single_style.yaml", "experiment/add_styles.yaml"):
        assert f"cin_style/conf/{yaml}" in names
    assert "cin_style/assets/demo.jpg" in names and "cin_style/assets/README.md" in names  # --demo works from a wheel
    # Every layer folder, and the photos that add_style fits on when the user gives none.
    for module in REPO.joinpath("cin_style").glob("*/*.py"):
        assert module.relative_to(REPO).as_posix() in names, module
    assert {f"cin_style/assets/photos/{p.name}" for p in REPO.joinpath("cin_style", "assets", "photos").glob("*.jpg")} <= names
    assert len(list(REPO.joinpath("cin_style", "assets", "photos").glob("*.jpg"))) >= 5
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cin-style = cin_style.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def test_the_layers_hold_and_the_contract_catches_an_upward_import(tmp_path):
    """docs/architecture.md's layers, checked by import-linter on the package as it is, and on a copy
    in which the network imports the inference layer (the contract must see that)."""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout

    import shutil

    shutil.copytree(repo / "cin_style", tmp_path / "cin_style", ignore=shutil.ignore_patterns("models", "__pycache__"))
    shutil.copy(repo / "pyproject.toml", tmp_path)
    phase = tmp_path / "cin_style" / "network" / "phase.py"
    phase.write_text(phase.read_text() + "\nfrom cin_style.inference.style_model import StyleModel  # noqa\n")
    broken = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert broken.returncode == 1 and "cin_style.network is not allowed to import cin_style.inference" in broken.stdout
    assert "cin_style.network.phase -> cin_style.inference.style_model" in broken.stdout


def test_the_flat_layouts_module_paths_still_import_as_the_moved_modules():
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import cin_style.api as old\n"
        "    from cin_style.loss import gram_matrix\n"
        "import cin_style.inference.style_model as new, cin_style.losses.perceptual as perceptual\n"
        "assert old is new and gram_matrix is perceptual.gram_matrix\n"
        "print([str(w.message) for w in caught if w.category is DeprecationWarning])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cin_style.api has moved to cin_style.inference.style_model" in done.stdout
    assert "cin_style.loss has moved to cin_style.losses.perceptual" in done.stdout
    missing = subprocess.run([sys.executable, "-c", "import cin_style.no_such_module"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "ModuleNotFoundError" in missing.stderr
