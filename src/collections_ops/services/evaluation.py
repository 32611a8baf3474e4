"""How well offline search finds photos by content: the golden set and its figures.

The golden set (`bench/golden/golden.json`, bundled with the package) is a list of photos that
ship inside scikit-image (`skimage/data/`, public-domain or CC0 images: a cat, a cup of coffee,
a rocket, ...) and of queries, each with the photos a person would expect it to find. The photos
are read from the installed package's files, never downloaded, and scikit-image itself is not
imported (its data files are all that is needed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PHOTOS_PACKAGE = "skimage"
PHOTOS_INSTALL = "pip install scikit-image"


class GoldenPhotosMissing(RuntimeError):
    """scikit-image (which ships the golden photos) is not installed."""


def photos_dir() -> Path:
    """`skimage/data/` of the installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec(PHOTOS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise GoldenPhotosMissing(f"the golden photos ship with scikit-image, which is not "
                                  f"installed: {PHOTOS_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def golden_photo(name: str) -> Path:
    """The path of one golden photo (`chelsea.png`)."""
    path = photos_dir() / name
    if not path.is_file():
        raise GoldenPhotosMissing(f"{path} is missing from the installed scikit-image: "
                                  f"{PHOTOS_INSTALL} --force-reinstall")
    return path
