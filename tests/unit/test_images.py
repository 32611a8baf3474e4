"""Untrusted images: allowed formats only, bombs refused, every odd mode rendered upright."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from collections_core import images as safe
from collections_core.errors import TerminalError
from tests import images


def rendered(data: bytes, edge: int = 256) -> tuple[Image.Image, safe.Source]:
    out, source = safe.render_small(data, edge)
    im = Image.open(io.BytesIO(out.data))
    im.load()
    return im, source


def test_a_jpeg_is_fitted_within_the_box_keeping_its_aspect():
    im, source = rendered(images.photo(1200, 600))
    assert im.size == (256, 128)
    assert (source.width, source.height, source.format) == (1200, 600, "JPEG")


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_exif_rotated_photos_come_out_upright(orientation):
    im, source = rendered(images.photo(400, 200, orientation=orientation))
    assert im.size == (128, 256)
    assert (source.width, source.height) == (200, 400)
    assert "exif" not in im.info or Image.Exif().get(0x0112) is None


@pytest.mark.parametrize(("mode", "fmt"), [
    ("CMYK", "JPEG"), ("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"),
    ("I;16", "PNG"), ("RGBA", "WEBP"), ("P", "GIF"),
])
def test_odd_modes_become_rgb_jpegs(mode, fmt):
    im, _ = rendered(images.photo(300, 200, mode=mode, fmt=fmt))
    assert im.mode == "RGB" and im.format == "JPEG"


def test_sixteen_bit_greyscale_is_scaled_not_clipped_to_white():
    im16 = Image.new("I;16", (64, 64), 30000)
    buf = io.BytesIO()
    im16.save(buf, format="PNG")
    im, _ = rendered(buf.getvalue(), 64)
    r, _g, _b = im.getpixel((32, 32))
    assert 100 < r < 140, "30000/65535 of full scale is mid grey"


def test_an_animated_gif_renders_its_first_frame():
    frames = [Image.new("P", (80, 80), c) for c in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    im, source = rendered(buf.getvalue(), 40)
    assert im.size == (40, 40) and source.format == "GIF"


def test_transparent_areas_are_flattened_on_white():
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    im, _ = rendered(buf.getvalue(), 50)
    assert im.getpixel((25, 25)) >= (250, 250, 250)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not an image in an allowed format"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image in an allowed format"),
    (b"SIMPLE  =                    T" + b" " * 2850, "not an image in an allowed format"),
    (images.bomb_png(), "decompression bomb"),
])
def test_refused_inputs_say_why(data, message):
    with pytest.raises(TerminalError, match=message):
        safe.render_small(data, 128)


def test_a_half_truncated_jpeg_is_refused_at_decode():
    with pytest.raises(TerminalError, match="corrupt or truncated"):
        safe.render_small(images.truncated(images.photo(1600, 1200)), 128)


def test_pixel_count_between_one_and_two_times_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(safe, "MAX_PIXELS", 500 * 500)
    with pytest.raises(TerminalError, match=r"bomb|limit"):
        safe.render_small(images.photo(600, 600), 128)


def test_an_oversized_object_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(safe, "MAX_BYTES", 1000)
    with pytest.raises(TerminalError, match="limit is 1000"):
        safe.open_image(images.photo(400, 400))


def test_a_large_jpeg_is_decoded_at_reduced_size(monkeypatch):
    """`draft` must run: the full-size decode path is never taken for a JPEG thumbnail."""
    from PIL import JpegImagePlugin

    scales = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        scales.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    safe.render_small(images.photo(3000, 2000), 256)
    assert scales, "render_small did not use reduced-size JPEG decoding"
    assert max(scales[-1]) <= 3000 / 2, "the decode was not reduced"
