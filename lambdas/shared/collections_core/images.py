"""Opening untrusted images safely, and making small versions of them quickly.

Only formats on the allow-list are opened (a PDF or EPS renamed `.jpg` is refused before any
decoder runs); pixel counts are checked from the header before decoding, and Pillow's
decompression-bomb warning is an error here. Every error a decoder raises on bad bytes
(including Pillow's text-chunk limit, `ValueError` at open) is terminal: the same bytes fail the
same way on every retry. Text read from the image (EXIF) is cleaned by `collections_core.text`
before anything uses it. Thumbnails decode JPEGs at reduced size (`draft`),
which saves most of the decode and resize work for large photos (figures in docs/benchmarks.md).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Any

from collections_core import text
from collections_core.errors import TerminalError

# What decoders raise on malformed input: deterministic, so never worth a retry.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                 KeyError, TypeError, ZeroDivisionError)
MAX_CAMERA_CHARS = 64

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
MAX_BYTES = 40 * 1024 * 1024
MAX_PIXELS = 60_000_000  # 60 MP: larger than any phone camera, far below a bomb


@dataclass(frozen=True)
class Rendered:
    data: bytes
    width: int
    height: int
    content_type: str


def _pil() -> Any:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def open_image(data: bytes) -> Any:
    """Open `data` as an allowed image format, refusing bombs; does not decode pixels yet."""
    if not data:
        raise TerminalError("the object is empty (0 bytes)", hint="upload the file again")
    if len(data) > MAX_BYTES:
        raise TerminalError(f"the object is {len(data)} bytes; the limit is {MAX_BYTES}")
    image_mod = _pil()
    with warnings.catch_warnings():
        warnings.simplefilter("error", image_mod.DecompressionBombWarning)
        try:
            im = image_mod.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except (image_mod.DecompressionBombError, image_mod.DecompressionBombWarning) as exc:
            raise TerminalError(f"refused a decompression bomb: {exc}") from None
        except image_mod.UnidentifiedImageError:
            raise TerminalError(
                "not an image in an allowed format",
                hint=f"allowed formats: {', '.join(ALLOWED_FORMATS)}",
            ) from None
        except DECODE_ERRORS as exc:
            raise TerminalError(f"unreadable image: {_reason(exc)}") from None
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise TerminalError(f"image is {width}x{height}; the limit is {MAX_PIXELS} pixels")
    return im


_TRANSPOSE_FOR_ORIENTATION = {2: 0, 3: 3, 4: 1, 5: 5, 6: 4, 7: 6, 8: 2}
# EXIF orientation -> Image.Transpose value (FLIP_LEFT_RIGHT=0, FLIP_TOP_BOTTOM=1, ROTATE_90=2,
# ROTATE_180=3, ROTATE_270=4, TRANSPOSE=5, TRANSVERSE=6)


def orientation(im: Any) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def to_rgb(im: Any) -> Any:
    """Any mode to RGB: alpha flattened on white, 16-bit scaled, CMYK and palettes converted."""
    image_mod = _pil()
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        background = image_mod.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return background
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


@dataclass(frozen=True)
class Source:
    """Facts about the original image, read from its header before any decoding."""

    format: str | None
    width: int  # upright, after EXIF orientation
    height: int
    camera: str | None

    @property
    def content_type(self) -> str:
        return content_type_for(self.format)


def _reason(exc: BaseException) -> str:
    return text.clean(f"{exc}" or type(exc).__name__, max_chars=200)


def _camera(im: Any) -> str | None:
    """Make and model from EXIF: attacker-controlled text, so cleaned and bounded here."""
    try:
        exif = im.getexif()
        parts = [exif.get(tag, "") for tag in (0x010F, 0x0110)]
    except Exception:
        return None
    cleaned = [text.clean(p.decode("latin-1") if isinstance(p, bytes) else p, max_chars=40)
               for p in parts if p]
    camera = text.clean(" ".join(p for p in cleaned if p), max_chars=MAX_CAMERA_CHARS)
    return camera or None


# A thumbnail's long edge may come out up to this much under the requested size when that lets
# libjpeg decode at the next smaller scale (a 4000 px photo gives 500 px, not 512, at 1/8).
DRAFT_TOLERANCE = 0.9


def _draft(im: Any, max_edge: int) -> None:
    """Ask libjpeg to decode at 1/8, 1/4 or 1/2 scale: the smallest whose long edge still
    reaches DRAFT_TOLERANCE of `max_edge`. Decoding dominates the cost of a thumbnail."""
    width, height = im.size
    for scale in (8, 4, 2):
        if max(width, height) / scale >= max_edge * DRAFT_TOLERANCE:
            im.draft("RGB" if im.mode == "RGB" else None,
                     (-(-width // scale), -(-height // scale)))
            return


def render_small(data: bytes, max_edge: int, *, quality: int = 82) -> tuple[Rendered, Source]:
    """Decode at reduced size, fit within `max_edge`, respect EXIF orientation, encode JPEG."""
    im = open_image(data)
    source_format = im.format
    turn = orientation(im)
    width, height = im.size
    if turn in (5, 6, 7, 8):
        width, height = height, width
    source = Source(source_format, width, height, _camera(im))
    if getattr(im, "is_animated", False):
        im.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", _pil().DecompressionBombWarning)
            small = im.copy() if source_format == "GIF" else im
            if source_format == "JPEG":
                _draft(small, max_edge)
            small.thumbnail((max_edge, max_edge), reducing_gap=None)
            small = to_rgb(small)
    except _pil().DecompressionBombError as exc:
        raise TerminalError(f"refused a decompression bomb: {exc}") from None
    except DECODE_ERRORS as exc:
        raise TerminalError(f"image data is corrupt or truncated: {_reason(exc)}") from None
    if turn in _TRANSPOSE_FOR_ORIENTATION:
        small = small.transpose(_TRANSPOSE_FOR_ORIENTATION[turn])
    out = io.BytesIO()
    # The original EXIF is not copied: the pixels are already upright.
    small.save(out, format="JPEG", quality=quality)
    return Rendered(out.getvalue(), small.width, small.height, "image/jpeg"), source


def content_type_for(fmt: str | None) -> str:
    return {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
            "GIF": "image/gif"}.get(fmt or "", "application/octet-stream")
