"""The image copies every package `pip install .` installs (a package added to pyproject.toml
but not to the Dockerfile's COPY lines builds an image that fails at its first import)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_the_image_copies_every_installed_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    installed = {name.split(".")[0] for name in find_packages(str(ROOT), include=find["include"])}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), flags=re.M))
    assert installed, "pyproject.toml names no packages"
    assert installed <= copied, f"Dockerfile does not COPY {sorted(installed - copied)}"
