"""What `pip install .` (the Docker image) gets: the code and the schema it migrates to.

The suite runs from an editable install, which reads the .sql files from the checkout; a
built wheel carries only what package-data names, so an image without its migrations
would start on an empty database and never notice.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def docker_copies() -> list[str]:
    """The sources the Dockerfile copies into the image before `pip install .`."""
    found: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            found += line.split()[1:-1]
    return found


@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None,
    reason="building the wheel offline needs setuptools in this environment",
)
def test_the_built_package_carries_every_migration(tmp_path: Path) -> None:
    # from a copy of what the Dockerfile copies: a build/ left in the checkout would mask
    # what the package configuration leaves out
    src = tmp_path / "src"
    src.mkdir()
    for item in docker_copies():
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, src / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / item, src / item)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("ticketing-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("services/migrations", "projections/migrations"):
        expected = {f"{package}/{p.name}" for p in (ROOT / package).glob("*.sql")}
        assert expected, package
        assert expected <= names, sorted(expected - names)
