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
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cin-style = cin_style.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
