"""What the offline analysis says about photos ImageNet has no class for: generic findings
from the pixels (points of light on black, rows of text, flat colour, an all-over texture),
checked on drawn images whose look is known by construction."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "lambdas" / "shared", ROOT / "lambdas" / "analyzer"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from PIL import Image, ImageDraw  # noqa: E402

import recognition  # noqa: E402
import vision  # noqa: E402
from collections_ops.services import evaluation  # noqa: E402


def looks_of(image: Image.Image) -> list[recognition.Look]:
    return recognition.looks(image, vision.measure(image))


def starfield() -> Image.Image:
    image = Image.new("RGB", (400, 300), (4, 4, 8))
    draw = ImageDraw.Draw(image)
    rng = random.Random(7)
    for _ in range(80):
        x, y = rng.randrange(400), rng.randrange(300)
        draw.ellipse((x, y, x + 2, y + 2), fill=(230, 230, 210))
    return image


def printed_page() -> Image.Image:
    image = Image.new("RGB", (400, 300), (235, 232, 225))
    draw = ImageDraw.Draw(image)
    for line in range(12):
        draw.text((12, 10 + line * 23), "the quick brown fox jumps over the lazy dog, again",
                  fill=(20, 20, 20))
    return image


def flat_logo() -> Image.Image:
    image = Image.new("RGB", (300, 300), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 40, 260, 260), fill=(240, 160, 20))
    draw.rectangle((120, 90, 180, 210), fill=(30, 70, 200))
    return image


def noise_texture() -> Image.Image:
    rng = random.Random(3)
    return Image.frombytes("L", (256, 256),
                           bytes(rng.randrange(256) for _ in range(256 * 256))).convert("RGB")


def brickwork() -> Image.Image:
    image = Image.new("RGB", (320, 240), (200, 200, 195))
    draw = ImageDraw.Draw(image)
    for row in range(12):
        shift = 0 if row % 2 else 20
        for col in range(-1, 9):
            x, y = col * 40 + shift, row * 20
            draw.rectangle((x + 2, y + 2, x + 37, y + 17), fill=(150, 70, 50))
    return image


def test_small_bright_points_on_black_look_like_a_night_sky() -> None:
    found = looks_of(starfield())

    assert recognition.STARRY in found
    assert recognition.TEXTURE not in found  # the points are the subject, not a surface


def test_rows_of_printed_characters_look_like_text_and_make_a_document() -> None:
    found = looks_of(printed_page())

    assert recognition.TEXT in found
    assert recognition._category("photo", found) == "document"


def test_solid_shapes_in_flat_colour_look_like_a_graphic() -> None:
    found = looks_of(flat_logo())

    assert recognition.FLAT in found
    assert recognition.TEXT not in found and recognition.STARRY not in found


def as_jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_a_drawn_logo_saved_as_a_jpeg_at_quality_75_still_looks_like_a_graphic() -> None:
    # JPEG reproduces a flat 8x8 block exactly; its artefacts stay near the edges, and the
    # 256-px copy the finding reads averages most of them away.
    big = flat_logo().resize((900, 900), Image.Resampling.NEAREST)

    found = looks_of(as_jpeg(big, 75))

    assert recognition.FLAT in found


def test_a_group_is_named_only_when_its_classes_together_are_more_likely_than_not() -> None:
    import numpy as np

    # GIVEN three cat classes at a third each (none above SURE) and, apart, a balloon at 48%
    # with a jellyfish (an animal) at 9%
    cats = np.zeros(1000)
    cats[[281, 282, 285]] = 1 / 3
    balloon = np.zeros(1000)
    balloon[417], balloon[107], balloon[619] = 0.48, 0.09, 0.43

    # THEN the first is "a cat, an animal" and the second no animal at all
    assert recognition.groups(cats) == ["cat", "animal"]
    assert recognition.groups(balloon) == []


def round_things(radii: list[int], *, background: tuple[int, int, int] = (40, 40, 40),
                 squares: bool = False) -> Image.Image:
    """Light shapes in rows on a plain dark background, one per radius."""
    image = Image.new("RGB", (480, 360), background)
    draw = ImageDraw.Draw(image)
    for n, r in enumerate(radii):
        x, y = 60 + (n % 6) * 75, 60 + (n // 6) * 85
        shape = draw.rectangle if squares else draw.ellipse
        shape((x - r, y - r, x + r, y + r), fill=(200, 195, 180))
    return image


def test_coins_laid_out_on_a_plain_background_look_like_round_objects() -> None:
    rng = random.Random(5)
    found = looks_of(as_jpeg(round_things([rng.randrange(22, 30) for _ in range(18)]), 75))

    assert recognition.ROUND in found
    assert found.index(recognition.ROUND) == 0


def test_squares_one_disc_or_discs_of_very_different_sizes_are_not_round_objects() -> None:
    assert recognition.ROUND not in looks_of(round_things([25] * 18, squares=True))
    assert recognition.ROUND not in looks_of(round_things([120]))
    assert recognition.ROUND not in looks_of(round_things([6, 34, 8, 30, 7, 33, 9, 36]))
    assert recognition.ROUND not in looks_of(starfield())
    assert recognition.ROUND not in looks_of(printed_page())


def field_of_view(*, radius: int, centre: tuple[int, int] = (240, 180),
                  size: tuple[int, int] = (480, 360), square: bool = False) -> Image.Image:
    """A lit field with dark vessels drawn across it, on a black surround."""
    image = Image.new("RGB", size, (2, 2, 2))
    draw = ImageDraw.Draw(image)
    x, y = centre
    box = (x - radius, y - radius, x + radius, y + radius)
    (draw.rectangle if square else draw.ellipse)(box, fill=(190, 90, 40))
    rng = random.Random(11)
    for _ in range(12):  # vessels: dark lines that leave holes in the lit region
        draw.line((x + rng.randrange(-radius, radius) // 2, y + rng.randrange(-radius, radius) // 2,
                   x + rng.randrange(-radius, radius) // 2, y + rng.randrange(-radius, radius) // 2),
                  fill=(3, 3, 3), width=3)
    return image


def test_a_round_lit_field_on_black_looks_like_a_field_of_view() -> None:
    found = looks_of(as_jpeg(field_of_view(radius=165), 85))

    assert recognition.FIELD in found
    assert found.index(recognition.FIELD) == 0


def test_a_square_a_small_disc_or_a_disc_cut_by_the_frame_is_not_a_field_of_view() -> None:
    assert recognition.FIELD not in looks_of(field_of_view(radius=150, square=True))
    assert recognition.FIELD not in looks_of(field_of_view(radius=60))  # a fifth of the frame
    assert recognition.FIELD not in looks_of(field_of_view(radius=200))  # reaches the edges
    assert recognition.FIELD not in looks_of(field_of_view(radius=150, centre=(120, 180)))
    assert recognition.FIELD not in looks_of(starfield())
    assert recognition.FIELD not in looks_of(flat_logo())  # a disc on white, not on black


def test_detail_alike_all_over_the_frame_looks_like_a_texture() -> None:
    found = looks_of(noise_texture())

    assert recognition.TEXTURE in found
    assert recognition.MONOCHROME in found


def test_the_same_shape_in_rows_looks_like_a_repeating_pattern() -> None:
    found = looks_of(brickwork())

    assert recognition.REPEATING in found
    if recognition.TEXTURE in found:  # the more specific finding comes first
        assert found.index(recognition.REPEATING) < found.index(recognition.TEXTURE)


def test_a_colour_photo_of_a_cat_gets_none_of_these_findings() -> None:
    found = looks_of(evaluation.rendered_photo("chelsea.png"))

    assert found == []


def test_the_analysis_says_what_the_pixels_look_like_in_its_description_and_tags() -> None:
    # GIVEN a drawn night sky, WHEN the classifier model analyses it
    analysis = vision.validate(vision.local_analysis(
        starfield(), {"width": 400, "height": 300}, model=vision.CLASSIFIER_MODEL))

    # THEN the finding is in the summary, the description and the first tags
    assert "points of light" in analysis["summary"]
    assert recognition.STARRY.phrase in analysis["description"]
    assert analysis["tags"][:2] == ["night sky", "stars"]


def test_the_summary_says_what_the_photo_shows_before_its_shape_and_colours() -> None:
    # GIVEN the cat photo, WHEN the classifier model analyses it
    image = evaluation.rendered_photo("chelsea.png")
    analysis = vision.validate(vision.local_analysis(
        image, {"width": image.width, "height": image.height}, model=vision.CLASSIFIER_MODEL))

    # THEN the summary opens with the classes and their group, and ends with what every photo
    # has (category, shape, colours), which says little about what is in it
    summary = analysis["summary"]
    assert summary.startswith("It shows an Egyptian cat"), summary
    assert summary.index("a cat, an animal") < summary.index("A landscape photo, mostly")
    assert summary.endswith(".") and "451x300" not in summary


def test_a_pixel_finding_comes_before_the_shape_and_colours_in_the_summary() -> None:
    analysis = vision.validate(vision.local_analysis(
        starfield(), {"width": 400, "height": 300}, model=vision.CLASSIFIER_MODEL))

    summary = analysis["summary"]
    assert summary.startswith("It ")
    assert summary.index("points of light") < summary.index("A landscape ")


def test_one_bright_outline_on_black_is_not_a_night_sky() -> None:
    # GIVEN a thin bright ellipse drawn on black (a CT phantom's outline, a lit ring), with a
    # few small points inside: dark, and many bright local maxima all along the outline
    image = Image.new("RGB", (400, 300), (4, 4, 8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 30, 340, 270), outline=(240, 240, 240), width=3)
    for x, y in ((150, 120), (250, 180), (200, 150)):
        draw.ellipse((x, y, x + 2, y + 2), fill=(230, 230, 230))

    # THEN it is not points of light: one part holds nearly all the light
    assert recognition.STARRY not in looks_of(image)
    # while a field of separate points still is
    assert recognition.STARRY in looks_of(starfield())
