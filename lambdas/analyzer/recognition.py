"""The `local-mobilenet-v2` analysis: what the classifier recognised, in the analysis's words.

The classifier answers with ImageNet classes ("tabby, tabby cat", "Egyptian cat"); a search
is typed in plain words ("cat"). So the analysis says the classes in its summary and
description, and its tags are the plain words: each class's first two synonyms, the words of
those synonyms ("tabby cat" -> "tabby", "cat"), and the common name of the group the class
belongs to ("golden retriever" -> "dog"), with Pillow's measurements (shape, tone, colours)
kept as they were. The schema is unchanged: the embedder and `verify` read it as before.
"""

from __future__ import annotations

from typing import Any

from classifier import Prediction, model

TOP_CLASSES = 5
MIN_PROBABILITY = 0.05  # a class below this is noise, unless it is the best one
SURE = 0.5  # the summary says "shows" at or above this, "may show" below
MAX_TAGS = 25  # ANALYSIS_SCHEMA's maxItems
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


def recognised_analysis(image: Any, measured: dict[str, Any]) -> dict[str, Any]:
    """`measured` (the Pillow analysis of `image`) with what the classifier saw added."""
    predictions = kept(model().predict(image, top=TOP_CLASSES))
    best = predictions[0]
    seen = _phrase(predictions)
    verb = "shows" if best.probability >= SURE else "may show"
    summary = f"{measured['summary'].rstrip('.')}; it {verb} {seen}."
    scores = ", ".join(f"{', '.join(p.names)} {p.probability:.0%}" for p in predictions)
    description = (f"Recognised offline by an ImageNet classifier (MobileNetV2): {scores}. "
                   f"{measured['description']}")
    tags = [*class_tags(predictions), *measured["tags"]]
    return {**measured, "summary": summary[:500], "description": description[:4000],
            "tags": list(dict.fromkeys(t[:60] for t in tags))[:MAX_TAGS],
            "confidence": round(min(1.0, max(0.0, best.probability)), 3)}


def kept(predictions: list[Prediction]) -> list[Prediction]:
    """The best class, and the others that are not noise."""
    return [p for i, p in enumerate(predictions) if i == 0 or p.probability >= MIN_PROBABILITY]


def class_tags(predictions: list[Prediction]) -> list[str]:
    """Plain lowercase words for the classes, the most probable class's first."""
    tags: list[str] = []
    for prediction in predictions:
        names = [n.lower() for n in prediction.names[:2]]
        tags.extend(names)
        for name in names:
            tags.extend(w for w in name.replace("-", " ").replace("'", " ").split()
                        if w not in _STOP_WORDS and len(w) > 1)
        tags.extend(group for indices, group in _GROUPS if prediction.class_index in indices)
    return list(dict.fromkeys(tags))


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
