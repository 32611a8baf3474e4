"""How many faces a photo shows, for the offline analysis: ImageNet has no class for a person,
so without this the classifier calls an astronaut "a bobsled" and no search for people finds
anyone.

OpenCV's frontal-face Haar cascade (`haarcascade_frontalface_default.xml`, shipped inside
`opencv-python-headless`: nothing is downloaded), run on a greyscale copy 256 px on its longest
edge, one thread, so a face must be at least 30 px there (about an eighth of the frame): the
faces of a portrait or a group photo, not of a crowd in the distance. The scale step (1.25)
and the neighbours a detection needs (6) are the cascade's usual settings made stricter, as
measured on the golden photos (`docs/benchmarks.md`): at OpenCV's defaults the cascade took up
to 240 ms on a texture and found three "faces" among the coins; at these, 2-21 ms per photo
and only the astronaut's face.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from collections_core.errors import ConfigurationError

INSTALL = "pip install 'opencv-python-headless>=4.8,<5'"
EDGE = 256
MIN_FACE = 30
SCALE_STEP = 1.25
NEIGHBOURS = 6


class DetectorMissing(ConfigurationError):
    """OpenCV is not installed; the reason names the install command."""


_per_thread = threading.local()


def _cascade() -> Any:
    """This thread's cascade. OpenCV's CascadeClassifier keeps its scale buffers in the object,
    so one shared by threads that detect at once miscounts or fails an assertion
    ("0 <= scaleIdx"): on Lambda a container runs one invocation at a time, but the local
    cloud's containers are threads of one process. Loading one takes about 10 ms."""
    cascade = getattr(_per_thread, "cascade", None)
    if cascade is None:
        cascade = _per_thread.cascade = _load_cascade()
    return cascade


def _load_cascade() -> Any:
    try:
        import cv2
    except ImportError:
        raise DetectorMissing(f"the offline face count needs OpenCV, which is not installed: "
                              f"{INSTALL}", hint=INSTALL) from None
    cv2.setNumThreads(1)  # one core, as in a 1-vCPU function; the budget is per core
    bundled = cv2.data.haarcascades  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(bundled + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise DetectorMissing("OpenCV's bundled face cascade is missing", hint=INSTALL)
    return cascade


class Face(NamedTuple):
    """A frontal face's box, as shares of the frame's width and height (0-1)."""

    left: float
    top: float
    width: float
    height: float


def find(image: Any) -> list[Face]:
    """The frontal faces in a Pillow image."""
    import numpy as np

    grey = image.convert("L")
    grey.thumbnail((EDGE, EDGE))
    found = _cascade().detectMultiScale(np.asarray(grey), scaleFactor=SCALE_STEP,
                                        minNeighbors=NEIGHBOURS, minSize=(MIN_FACE, MIN_FACE))
    return [Face(x / grey.width, y / grey.height, w / grey.width, h / grey.height)
            for x, y, w, h in np.asarray(found).reshape(-1, 4).tolist()]


def count(image: Any) -> int:
    """The number of frontal faces in a Pillow image."""
    return len(find(image))
