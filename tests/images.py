"""Images made on the fly for tests: photo-like JPEGs, odd modes, broken files."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter


def photo(width: int = 800, height: int = 600, *, seed: int = 1, fmt: str = "JPEG",
          orientation: int | None = None, mode: str = "RGB") -> bytes:
    rng = random.Random(seed)
    im = Image.new("RGB", (width, height), (120, 170, 220))
    draw = ImageDraw.Draw(im)
    for _ in range(30):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randint(10, max(11, width // 6))
        draw.ellipse([x - r, y - r, x + r, y + r],
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    im = im.filter(ImageFilter.GaussianBlur(1.5))
    if mode != "RGB":
        im = im.convert(mode)
    out = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    im.save(out, format=fmt, **kwargs)
    return out.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims 400 megapixels."""
    im = Image.new("1", (width, height))
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=True)
    return out.getvalue()
