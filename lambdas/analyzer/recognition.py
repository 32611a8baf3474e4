"""The `local-mobilenet-v2` analysis: what the classifier recognised, in the analysis's words.

The classifier answers with ImageNet classes ("tabby, tabby cat", "Egyptian cat"); a search
is typed in plain words ("cat"). So the analysis says the classes in its summary and
description, and its tags are the plain words: each class's first two synonyms, the words of
those synonyms ("tabby cat" -> "tabby", "cat"), and the common name of the group the class
belongs to ("golden retriever" -> "dog"), with Pillow's measurements (shape, tone, colours)
kept as they were. The summary says it in one sentence with the groups' plain names ("it
shows an Egyptian cat (or a tiger cat, a tabby cat): a cat, an animal"): it is what the offline
embedding model embeds (`embedding.e5_passage`). The schema is unchanged: the embedder and
`verify` read it as before.

ImageNet has no class for much of what people photograph (a page of text, a night sky, a
logo, a wall): on those the classifier's best guess is noise ("Petri dish"). So `looks` adds
generic findings from the pixels themselves, each a threshold on a plain statistic (dark with
many bright local maxima, rows of short dark strokes on light, several round shapes of one
size on a plain background, mostly flat colour, a strong
autocorrelation peak away from the centre, the same amount of detail in every tile), the more
specific first (the summary names the first), worded as what such pixels usually are ("as in
a photo of stars"). They never look for a particular photo; `bench/bench_golden.py` measured
them.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import faces
from classifier import Prediction, model

TOP_CLASSES = 5
MIN_PROBABILITY = 0.05  # a class below this is noise, unless it is the best one
SURE = 0.5  # the summary says "shows" at or above this, "may show" below
MAX_TAGS = 25  # ANALYSIS_SCHEMA's maxItems
# A face at least this share of the frame's height makes a portrait (head and shoulders);
# the smallest face counted is about an eighth (faces.MIN_FACE on the 256-px copy).
PORTRAIT_FACE = 1 / 6
GROUP_MIN = 0.5  # a group is named when its classes together are more likely than not
# ImageNet's class indices are grouped by kind; these groups have a plain common name.
_GROUPS: tuple[tuple[range, str], ...] = (
    (range(0, 7), "fish"), (range(389, 398), "fish"),
    (range(7, 25), "bird"), (range(80, 101), "bird"), (range(127, 147), "bird"),
    (range(151, 269), "dog"),
    (range(281, 286), "cat"), (range(286, 294), "big cat"),
    (range(300, 327), "insect"),
    (range(0, 398), "animal"),
    (range(924, 970), "food"),
)
_STOP_WORDS = frozenset({"a", "an", "and", "of", "the", "for", "with", "to", "in", "on", "s"})


def small_copy(image: Any) -> Any:
    """The RGB copy, 256 px on its longest edge, that the pixel findings, the face count and
    Pillow's measurements read (made once: each downscale of a full rendition costs ~2.5 ms)."""
    small = image.convert("RGB")
    small.thumbnail((_LOOK_EDGE, _LOOK_EDGE))
    return small


def recognised_analysis(image: Any, measured: dict[str, Any], *,
                        small: Any = None) -> dict[str, Any]:
    """`measured` (the Pillow analysis of `image`) with what the classifier saw added;
    `small`: `small_copy(image)`, if the caller has made it."""
    small = small_copy(image) if small is None else small
    network = model()
    probabilities = network.probabilities(image)
    predictions = kept(network.top(probabilities, TOP_CLASSES))
    kinds = groups(probabilities)
    best = predictions[0]
    seen = _phrase(predictions)
    verb = "shows" if best.probability >= SURE else "may show"
    found = looks(small, measured)
    category = _category(measured["category"], found)
    # The summary is what e5 embeds (embedding.e5_passage): what the photo shows first (the
    # classes and their plain group names, "a cat, an animal", the people, the first pixel
    # finding), then the final category, shape and colours, which every photo has and which
    # say little about what is in it; not the pixel size (e5 costs time per token, and nobody
    # searches for "451x300"). docs/benchmarks.md records what the order changed.
    seen_faces = faces.find(small)
    people = len(seen_faces)
    sentences = [f"It {verb} {seen}{_kinds(kinds)}."]
    if people:
        sentences.append(f"It shows {_people(people, portrait=portrait(seen_faces))}.")
    if found:
        sentences.append(f"It looks like {found[0].phrase}.")
    sentences.append(re.sub(r"^A (\w+) \w+, \d+x\d+,", rf"A \1 {category},",
                            measured["summary"]))
    summary = " ".join(sentences)
    scores = ", ".join(f"{', '.join(p.names)} {p.probability:.0%}" for p in predictions)
    description = (f"Recognised offline by an ImageNet classifier (MobileNetV2): {scores}. "
                   f"{measured['description']}")
    if found:
        description += f" The pixels look like {'; and '.join(f.phrase for f in found)}."
    people_tags = (["person", "face", "portrait"] if people == 1
                   else ["people", "group", "faces"] if people else [])
    tags = [*people_tags, *(t for f in found for t in f.tags), *class_tags(predictions, kinds),
            *measured["tags"]]
    return {**measured, "category": category,
            "summary": summary[:500], "description": description[:4000],
            "tags": list(dict.fromkeys(t[:60] for t in tags))[:MAX_TAGS],
            "confidence": round(min(1.0, max(0.0, best.probability)), 3)}


def _category(measured: str, found: list[Look]) -> str:
    """Lines of text make a document and flat colour a graphic, whatever the measurements
    guessed (a greyscale photo has few distinct colours, like a screenshot)."""
    if TEXT in found:
        return "document"
    if FLAT in found:
        return "graphic"
    return measured


def kept(predictions: list[Prediction]) -> list[Prediction]:
    """The best class, and the others that are not noise."""
    return [p for i, p in enumerate(predictions) if i == 0 or p.probability >= MIN_PROBABILITY]


def groups(probabilities: Any) -> list[str]:
    """The plain names of the groups the classifier finds more likely than not: each group's
    classes' probabilities summed over all 1000 (a cat photo is "a cat" even when its three
    cat classes get a third each; a balloon at 48% with a jellyfish at 9% is not "an
    animal")."""
    masses: dict[str, float] = {}
    for indices, group in _GROUPS:
        mass = float(probabilities[indices.start:indices.stop].sum())
        masses[group] = masses.get(group, 0.0) + mass
    return [group for group, mass in masses.items() if mass >= GROUP_MIN]


def class_tags(predictions: list[Prediction], kinds: list[str]) -> list[str]:
    """Plain lowercase words for the classes, the most probable class's first, then the
    groups' names (`groups`)."""
    tags: list[str] = []
    for prediction in predictions:
        names = [n.lower() for n in prediction.names[:2]]
        tags.extend(names)
        for name in names:
            tags.extend(w for w in name.replace("-", " ").replace("'", " ").split()
                        if w not in _STOP_WORDS and len(w) > 1)
    tags.extend(kinds)
    return list(dict.fromkeys(tags))


def portrait(seen_faces: list[faces.Face]) -> bool:
    """One face, filling at least PORTRAIT_FACE of the frame's height: a portrait."""
    return len(seen_faces) == 1 and seen_faces[0].height >= PORTRAIT_FACE


def _people(count: int, *, portrait: bool = False) -> str:
    """ "one person (a face seen from the front)", "3 people (...)"; `portrait`: the one
    face fills much of the frame."""
    if portrait:
        return "a portrait of one person (a face seen from the front, close up)"
    if count == 1:
        return "one person (a face seen from the front)"
    return f"{count} people (their faces seen from the front)"


def _kinds(kinds: list[str]) -> str:
    """ ": a cat, an animal": the plain names of the groups (`groups`), if any."""
    return f": {', '.join(_with_article(g) for g in kinds)}" if kinds else ""


def _phrase(predictions: list[Prediction]) -> str:
    """ "a tabby cat", or "an Egyptian cat (or a tiger cat, a tabby)" for several classes."""
    named = [_with_article(_common_name(p)) for p in predictions[:3]]
    if len(named) == 1:
        return named[0]
    return f"{named[0]} (or {', '.join(named[1:])})"


def _common_name(prediction: Prediction) -> str:
    """The synonym a person would say: the first, unless a later one contains it and is longer
    ("tabby" -> "tabby cat")."""
    first = prediction.names[0]
    for other in prediction.names[1:2]:
        if first.lower() in other.lower().split():
            return other
    return first


def _with_article(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


# ------------------------------------------------------------ what the pixels look like


class Look(NamedTuple):
    """A generic finding from the pixels, for photos ImageNet has no class for: a phrase for
    the description and plain words for the tags."""

    phrase: str
    tags: tuple[str, ...]


STARRY = Look("many small bright points of light on a black background, as in a photo of "
              "stars or galaxies in the night sky",
              ("night sky", "stars", "points of light", "space"))
TEXT = Look("rows of small dark marks on a light background, as in lines of printed or "
            "written text on a page", ("text", "page", "document", "writing"))
FLAT = Look("large flat areas of solid colour with sharp edges, as in a logo, an icon, an "
            "illustration or a diagram rather than a photograph",
            ("logo", "graphic", "illustration", "flat colour"))
TEXTURE = Look("a close-up of one surface or texture that fills the whole frame, with no "
               "single subject", ("texture", "surface", "close-up", "pattern"))
REPEATING = Look("a regular pattern that repeats across the frame, the same shape again and "
                 "again in rows, as in brickwork, tiles, a fence or a grid",
                 ("repeating pattern", "regular pattern", "rows"))
ROUND = Look("several separate round objects of about one size on a plain background, as "
             "in coins, buttons, pills or cells laid out", ("round objects", "circles", "coins"))
FIELD = Look("one round bright field of view on a black surround, as in a photo of the back "
             "of an eye (the retina) or a view through an eyepiece",
             ("circular field", "disc", "eyepiece", "retina"))
MONOCHROME = Look("a black-and-white image", ("black and white", "monochrome"))
_LOOK_EDGE = 256  # the pixels are judged on a copy this size on its longest edge
ROUND_MIN_COUNT = 5  # "several" round objects
STARRY_LARGEST_PART = 0.25  # points of light: no one bright part holds more of the light
BLACK = 0.08  # grey level (0-1) under which a pixel counts as black
FIELD_MIN_SHARE = 0.3  # a field of view fills at least this much of the frame...
FIELD_MIN_FILL = 0.85  # ...and at least this much of its enclosing circle (a square: 64%)


def looks(image: Any, measured: dict[str, Any]) -> list[Look]:
    """What the pixels look like, judged by thresholds on plain statistics, never on what the
    photo is expected to be."""
    import numpy as np

    small = image.convert("RGB")
    small.thumbnail((_LOOK_EDGE, _LOOK_EDGE))
    pixels = np.asarray(small)
    rgb = pixels.astype(np.float32) / 255.0
    grey = rgb.mean(axis=2)
    starry = _starry(grey)
    found = [look for look, seen in ((STARRY, starry), (FIELD, _round_field(grey)),
                                     (TEXT, _text_like(grey)),
                                     (ROUND, _round_objects(grey)),
                                     (FLAT, _flat(pixels)), (REPEATING, _repeating(grey)),
                                     (TEXTURE, not starry and _texture(grey)))
             if seen]
    if measured.get("saturation", 1.0) < 0.02:
        found.append(MONOCHROME)
    return found


def _local_maxima(grey: Any, floor: float) -> int:
    """The count of pixels above `floor` that are the brightest of their 5x5 neighbourhood."""
    import numpy as np

    padded = np.pad(grey, 2, mode="constant")
    height, width = grey.shape
    neighbourhood = np.max([padded[dy:dy + height, dx:dx + width]
                            for dy in range(5) for dx in range(5)], axis=0)
    return int(((grey >= neighbourhood) & (grey > floor)).sum())


def _starry(grey: Any) -> bool:
    """Mostly black, with many separate small bright points (not one bright region): many
    local maxima, and no connected bright part holds more than STARRY_LARGEST_PART of the
    bright pixels (a drawn outline or a lit shape on black is one part with bright maxima
    all along it; the Hubble deep field's largest part holds 4%, a CT phantom's 54%)."""
    import cv2

    if grey.mean() > 0.2 or (grey > 0.5).mean() > 0.05:
        return False
    floor = max(0.25, float(grey.mean()) + 0.15)
    if _local_maxima(grey, floor) < 20:
        return False
    cv2.setNumThreads(1)
    _count, _labels, stats, _centres = cv2.connectedComponentsWithStats(
        (grey > floor).astype("uint8"), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return bool(areas.size) and float(areas.max()) <= STARRY_LARGEST_PART * float(areas.sum())


def _round_field(grey: Any) -> bool:
    """One lit region, clear of every edge of the frame, that fills FIELD_MIN_SHARE of it and
    FIELD_MIN_FILL of its smallest enclosing circle, on black: the round field a microscope,
    a telescope's eyepiece or a fundus camera leaves on the sensor. A photo's subject on a
    dark background touches an edge or is not that round (a CT phantom's ellipse fills 75%
    of its circle; a colour wheel that reaches the frame's edge is refused for touching it)."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    lit = (grey >= BLACK).astype(np.uint8)
    count, labels, stats, _centres = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if count < 2:
        return False
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    left, top, width, height = (int(v) for v in stats[largest, :4])
    if left == 0 or top == 0 or left + width >= grey.shape[1] or top + height >= grey.shape[0]:
        return False
    contours, _hierarchy = cv2.findContours((labels == largest).astype(np.uint8),
                                            cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(contours, key=cv2.contourArea)
    area = float(cv2.contourArea(outline))  # holes (dark vessels, specks) filled
    _centre, radius = cv2.minEnclosingCircle(outline)
    return (area >= FIELD_MIN_SHARE * grey.size
            and area >= FIELD_MIN_FILL * float(np.pi * radius * radius))


def _text_like(grey: Any) -> bool:
    """Light background with dark marks that stand in rows, each row broken into many short
    strokes (characters), not the long lines of a pattern."""
    import numpy as np

    local = _box_mean(grey, 7)
    ink = grey < local - 0.06
    share = float(ink.mean())
    if not 0.02 <= share <= 0.35 or float(np.median(grey)) < 0.45:
        return False
    rows = ink.mean(axis=1)
    inked = rows > max(0.02, share * 0.6)
    lines = int((inked[1:] & ~inked[:-1]).sum())  # starts of runs of inked rows
    strokes = np.abs(np.diff(ink[inked].astype(np.int8), axis=1)).sum(axis=1)
    per_100px = float(strokes.mean()) * 100 / grey.shape[1] if strokes.size else 0.0
    return lines >= 4 and per_100px >= 12


def _flat(pixels: Any) -> bool:
    """Most of the picture is areas where neighbouring pixels have exactly one colour
    (`pixels`: the 8-bit RGB array, compared as bytes: four times faster than as floats)."""
    same_right = (pixels[:, 1:] == pixels[:, :-1]).all(axis=2)[:-1, :]
    same_down = (pixels[1:, :] == pixels[:-1, :]).all(axis=2)[:, :-1]
    return float((same_right & same_down).mean()) > 0.5


def _texture(grey: Any) -> bool:
    """Busy everywhere and alike everywhere: every tile of a 4x4 grid has about the same
    amount of detail, and a lot of it."""
    import numpy as np

    gradient = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1, :]
    height, width = gradient.shape
    tiles = [gradient[r * height // 4:(r + 1) * height // 4,
                      c * width // 4:(c + 1) * width // 4].mean()
             for r in range(4) for c in range(4)]
    mean = float(np.mean(tiles))
    return mean > 0.05 and float(np.std(tiles)) / mean < 0.25


def _repeating(grey: Any) -> bool:
    """The picture matches itself when shifted by some distance, though not when shifted by a
    few pixels: its autocorrelation has a strong peak away from the centre and has fallen off
    near it (a smooth photo stays correlated at every short shift)."""
    import numpy as np

    centred = grey - grey.mean()
    spectrum = np.fft.rfft2(centred)
    correlation = np.fft.irfft2(np.abs(spectrum) ** 2, s=centred.shape)
    if correlation[0, 0] <= 0:
        return False
    correlation /= correlation[0, 0]
    height, width = correlation.shape
    dy = np.minimum(np.arange(height), height - np.arange(height))[:, None]
    dx = np.minimum(np.arange(width), width - np.arange(width))[None, :]
    shift = np.sqrt(dy ** 2 + dx ** 2)
    near = float(correlation[(shift >= 3.5) & (shift < 4.5)].mean())
    repeat = float(correlation[(shift >= 6) & (shift <= min(height, width) / 3)].max())
    return near < 0.3 and repeat >= 0.4


def _round_objects(grey: Any) -> bool:
    """Several separate shapes stand out from a plain background, and they are round and of
    about one size: Otsu's threshold splits the picture, the smaller side is the objects, and
    at least ROUND_MIN_COUNT of its connected parts (each over 0.2% of the frame) are round:
    they fill about as much of the ellipse of their second moments as a disc does (80-110%;
    axes within 1.5:1) and about as much of their bounding box (65-90%, a disc 79%: a square
    fills all of it, a diamond half). Their areas are within a spread of half their mean."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    levels = np.clip(grey * 255, 0, 255).astype(np.uint8)
    _threshold, split = cv2.threshold(levels, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if split.mean() > 0.5:
        split = 1 - split
    count, labels, stats, _centres = cv2.connectedComponentsWithStats(split, connectivity=8)
    ys, xs = np.nonzero(labels)
    label = labels[ys, xs]
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    safe = np.maximum(area, 1.0)
    dx = xs - (np.bincount(label, xs, count) / safe)[label]
    dy = ys - (np.bincount(label, ys, count) / safe)[label]
    sxx, syy, sxy = (np.bincount(label, v, count) / safe for v in (dx * dx, dy * dy, dx * dy))
    spread = np.sqrt((sxx - syy) ** 2 + 4 * sxy ** 2)
    major = np.maximum((sxx + syy + spread) / 2, 1e-6)
    minor = np.maximum((sxx + syy - spread) / 2, 1e-6)
    # A filled ellipse whose second moments are (major, minor) has the area 4 pi sqrt(both).
    of_ellipse = area / (4 * np.pi * np.sqrt(major * minor))
    of_box = area / np.maximum(stats[:, cv2.CC_STAT_WIDTH] * stats[:, cv2.CC_STAT_HEIGHT], 1)
    round_ = ((area >= grey.size * 0.002) & (np.sqrt(major / minor) <= 1.5)
              & (of_ellipse >= 0.8) & (of_ellipse <= 1.1) & (of_box >= 0.65) & (of_box <= 0.9))
    round_[0] = False  # the background
    sizes = area[round_]
    return (len(sizes) >= ROUND_MIN_COUNT
            and float(sizes.std()) <= 0.5 * float(sizes.mean()))


def _box_mean(grey: Any, radius: int) -> Any:
    """The mean of each pixel's (2r+1)^2 neighbourhood, edges clamped (an integral image)."""
    import numpy as np

    padded = np.pad(grey, radius + 1, mode="edge").astype(np.float64)
    summed = padded.cumsum(axis=0).cumsum(axis=1)
    size = 2 * radius + 1
    height, width = grey.shape
    window = (summed[size:size + height, size:size + width] - summed[:height, size:size + width]
              - summed[size:size + height, :width] + summed[:height, :width])
    return window / (size * size)
