"""Packaging: the wheel adds one name, ``bench``, to site-packages, with the plugin folders inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import BUILTIN_DETECTORS

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("pyproject.toml", "README.md", "bench", "detectors", "generators", "suites")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the project's files (a build in the checkout would leave build/ behind)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(folder / "dist"), str(source)], check=True, capture_output=True)
    return next((folder / "dist").glob("*.whl"))


def test_wheel_holds_bench_and_its_metadata_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    metadata = {name for name in top if name.endswith(".dist-info")}
    assert top - metadata == {"bench"} and len(metadata) == 1
    assert wheel.name.startswith("aigi_bench-")  # the distribution; "bench" on PyPI is another project
    for shipped in ("bench/detectors/lenet.py", "bench/generators/_diffusers.py", "bench/suites/smoke.yaml",
                    "bench/templates/detector/detector.py.j2", "bench/templates/leaderboard.html.j2"):
        assert shipped in names
    entry_points = zipfile.ZipFile(wheel).read(f"{metadata.pop()}/entry_points.txt").decode()
    assert "bench = bench.cli:main" in entry_points


@pytest.mark.slow
def test_installed_wheel_runs_from_its_own_files(wheel, tmp_path):
    """Installed into a fresh virtual environment that borrows this one's dependencies but not its bench."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # torch & co. from this environment; its .pth files (the editable bench) are not processed from there
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*command: str | Path) -> str:
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout

    files = run(python, "-c", "import bench.detectors, bench.suite; print(bench.__file__, bench.detectors.__file__)")
    assert all(Path(f).resolve().is_relative_to(venv.resolve()) for f in files.split()), files
    listed = run(venv / "bin" / "bench", "list", "detectors")
    assert [line.split()[0] for line in listed.splitlines()] == BUILTIN_DETECTORS
    assert "smoke" in run(venv / "bin" / "bench", "list", "suites").split()
